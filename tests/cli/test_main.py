"""The entry point's error handling: an internal error is one line and exit 3; with UET_DEBUG
the traceback comes first, and the exit code stays 3 (it was 1: the exception escaped)."""

from __future__ import annotations

from pathlib import Path

import pytest

import uet_git.cli.status as status_cmd
from tests.conftest import make_repo
from uet_git.cli import main
from uet_git.errors import EXIT_INTERNAL


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("injected fault in the ledger reader")


def _run_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(make_repo(tmp_path / "repo"))
    monkeypatch.setattr(status_cmd.query, "latest_run", _boom)
    with pytest.raises(SystemExit) as exc:
        main(["status"])
    return int(exc.value.code or 0)


def test_internal_error_is_one_line_exit_3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("UET_DEBUG", raising=False)
    assert _run_status(tmp_path, monkeypatch) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "uet: internal error: RuntimeError: injected fault in the ledger reader "
        "(set UET_DEBUG=1 for a traceback)"]


@pytest.mark.parametrize("value", ["1", "yes"])
def test_uet_debug_prints_traceback_and_keeps_exit_3(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        value: str) -> None:
    monkeypatch.setenv("UET_DEBUG", value)
    assert _run_status(tmp_path, monkeypatch) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "_boom" in err
    assert err.strip().splitlines()[-1] == (
        "uet: internal error: RuntimeError: injected fault in the ledger reader")


def test_uet_debug_0_is_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UET_DEBUG", "0")
    assert _run_status(tmp_path, monkeypatch) == EXIT_INTERNAL
    assert "Traceback" not in capsys.readouterr().err
