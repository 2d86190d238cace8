"""Every command that only reads works in a bare mirror (a CI server's), as README says."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import run_ok, setup_repo


def test_reading_commands_work_in_a_bare_mirror(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    run_ok(repo, "run", "-q")
    mirror = tmp_path / "m.git"
    git(tmp_path, "clone", "-q", "--mirror", str(repo), str(mirror))
    run_id = json.loads(run_ok(mirror, "runs", "--json").stdout)[0]["run"]
    assert "a           committed" in run_ok(mirror, "status").stdout
    assert "a: none -> created" in run_ok(mirror, "log").stdout
    assert json.loads(run_ok(mirror, "show", "a", "--json").stdout)["landed"] is True
    assert run_ok(mirror, "check", "main~1..main").stdout.startswith("uet check: 1 uet patch")
    assert "a.txt" in run_ok(mirror, "diff", "a", "--stat").stdout
    run_ok(mirror, "report", run_id, "-o", str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads(run_ok(mirror, "fsck", "--json").stdout)["clean"] is True
