"""``git worktree add`` while ``git worktree prune`` loops (every ``git gc`` runs one): git
writes its admin dir's lock only after creating the directory, so a prune in between takes
the new directory for a dead worktree and the add fails (about 3% of adds here). uet's add
tries again."""

from __future__ import annotations

import subprocess as sp
import threading
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.worktrees import add_worktree, admin_dir, remove_worktree, worktree_head

ADDS = 30
PRUNERS = 2


def test_add_worktree_survives_a_looping_worktree_prune(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    stop = threading.Event()
    prunes: list[int] = []

    def prune() -> None:
        while not stop.is_set():
            prunes.append(sp.run(["git", "worktree", "prune"], cwd=path,
                                 capture_output=True).returncode)

    threads = [threading.Thread(target=prune) for _ in range(PRUNERS)]
    for t in threads:
        t.start()
    try:
        for i in range(ADDS):
            wt = tmp_path / "wt" / str(i)
            add_worktree(repo, wt, base, lock_reason="uet test", checkout=False)
            assert worktree_head(repo, wt) == base
            assert (admin_dir(repo, wt) / "locked").is_file()
            if i % 2:
                remove_worktree(repo, wt)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert prunes


def test_a_failed_add_still_says_why_in_one_line(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    with pytest.raises(GitError) as err:
        add_worktree(repo, tmp_path / "wt", "0" * 40)
    assert "git worktree add" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "wt").exists() or not any((tmp_path / "wt").iterdir())
