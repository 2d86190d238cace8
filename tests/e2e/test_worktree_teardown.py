"""``[worktree] teardown``: run in a worktree just before uet removes it (``uet run
--fresh-worktrees`` at the end of the run, ``uet gc`` for idle kept ones), never while it is
kept; a failing teardown is reported and does not keep the worktree."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, uet
from tests.e2e.helpers import setup_repo


def _config(log: Path, fail: bool = False) -> str:
    cmd = f'echo "$UET_WORKTREE" >> {log}' + (" && exit 4" if fail else "")
    return f"[worktree]\nsetup = ['true']\nteardown = [{json.dumps(cmd)}]\n"


def _slots(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [ln.split(" ", 1)[1] for ln in out.splitlines()
            if ln.startswith("worktree ") and "/uet/worktrees/" in ln]


def test_teardown_runs_when_fresh_worktrees_are_removed(tmp_path: Path) -> None:
    log = tmp_path / "teardown.log"
    repo = setup_repo(tmp_path / "r", config=_config(log),
                      workstreams={"a": {"command": "echo a > a.txt"}})
    r = uet("run", "--fresh-worktrees", "-j", "1", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    ran = log.read_text().split()
    assert ran and all("/uet/worktrees/" in p for p in ran)
    assert _slots(repo) == []


def test_teardown_runs_only_when_gc_removes_a_kept_worktree(tmp_path: Path) -> None:
    log = tmp_path / "teardown.log"
    repo = setup_repo(tmp_path / "r", config=_config(log, fail=True),
                      workstreams={"a": {"command": "echo a > a.txt"}})
    r = uet("run", "-j", "1", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    kept = _slots(repo)
    assert kept and not log.exists()  # kept for the next run: no teardown
    g = uet("gc", "--older-than", "0s", "--json", cwd=repo)
    assert g.returncode == 0, g.stderr
    out = json.loads(g.stdout)
    assert sorted(out["worktrees"]) == sorted(kept)
    assert sorted(log.read_text().split()) == sorted(kept)
    assert len(out["teardown_failed"]) == len(kept)
    assert "exit 4" in out["teardown_failed"][0]
    assert _slots(repo) == []  # removed all the same
