"""sandbox.probe says in one line why there is no sandbox (runs where bwrap is missing too)."""

from __future__ import annotations

from pathlib import Path

import pytest

from uet_git.workers import sandbox


def test_probe_says_why_there_is_no_sandbox(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert sandbox.probe() == "bubblewrap (bwrap) is not installed"
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "bwrap").write_text("#!/bin/sh\necho 'bwrap: No permissions to create a new "
                                "namespace' >&2\nexit 1\n")
    (fake / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    assert sandbox.probe() == ("bwrap does not work here: bwrap: No permissions to create a new "
                               "namespace")
