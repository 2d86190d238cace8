"""`uet run` keeps its worktrees for the next run by default ([worktree] keep = true): the next
run resets them (no new `git worktree add`, no orphan records); --fresh-worktrees and
`keep = false` remove them at the end, as before."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import ledger_subjects, run_ok, setup_repo, states

WS = {"a": {"command": "echo $UET_RUN >> a.txt"}, "b": {"command": "echo $UET_RUN >> b.txt"}}


def _slots(repo: Path) -> list[str]:
    return [w.split()[0] for w in git(repo, "worktree", "list").splitlines()[1:]]


def _admin_ids(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / ".git" / "worktrees").iterdir())


def test_worktrees_are_kept_and_reset_by_the_next_run(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams=WS)
    run_ok(repo, "run", "--jobs", "2")
    kept = _slots(repo)
    assert kept and all("/.git/uet/worktrees/" in p for p in kept)
    assert git(repo, "status", "--porcelain") == ""
    ids = _admin_ids(repo)
    run_ok(repo, "run", "--jobs", "2")
    assert set(states(repo).values()) == {"committed"}
    assert _admin_ids(repo) == ids and _slots(repo) == kept  # reset, not re-created
    assert not any(s.startswith("run: orphan") for s in ledger_subjects(repo))
    assert len(git(repo, "show", "main:a.txt").splitlines()) == 2

    run_ok(repo, "run", "--jobs", "2", "--fresh-worktrees")
    assert _slots(repo) == []


def test_keep_false_in_uet_toml_removes_them(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams=WS, config="[worktree]\nkeep = false\n")
    run_ok(repo, "run", "--jobs", "2")
    assert _slots(repo) == []
