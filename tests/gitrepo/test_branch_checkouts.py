"""``checkouts_of`` read from the worktree files in process gives what it gives from
``git worktree list`` (``_checkouts_by_git``), on the layouts users and tools make; where it
cannot be sure, git is asked."""

from __future__ import annotations

import os
import shutil
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.checkouts import _checkouts_by_git, _worktrees_in_process, checkouts_of
from uet_git.gitrepo.repo import Repo

REF = "refs/heads/main"


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(path, "commit", "-q", "--allow-empty", "-m", "two")
    return Repo.open(path)


def add(repo: Repo, name: str, *args: str, commit: str = "HEAD") -> Path:
    path = repo.workdir.parent / name
    git(repo.workdir, "worktree", "add", "-q", *args, str(path), commit)
    return path.resolve()


def agree(repo: Repo, ref: str = REF) -> list[Path]:
    mine, gits = checkouts_of(repo, ref), _checkouts_by_git(repo, ref)
    assert mine == gits
    return mine


def test_plain_worktrees_read_in_process_as_git_lists_them(repo: Repo) -> None:
    other = add(repo, "other", "-b", "topic")
    detached = add(repo, "detached", "--detach")
    on_main = add(repo, "second", "--force", commit="main")
    (repo.common_dir / "worktrees" / "stray-file").write_text("not a worktree\n")
    (repo.common_dir / "worktrees" / "half-made").mkdir()  # no gitdir yet: git skips it
    pool = repo.common_dir / "uet" / "pool" / "slot-0"
    pool.parent.mkdir(parents=True)
    git(repo.workdir, "worktree", "add", "-q", "--detach", str(pool))
    git(repo.workdir, "checkout", "-q", "--detach")
    assert _worktrees_in_process(repo) is not None
    assert agree(repo) == [on_main]
    assert agree(repo, "refs/heads/topic") == [other]
    assert detached not in agree(repo, "refs/heads/topic")
    git(repo.workdir, "checkout", "-q", "main", "--ignore-other-worktrees")
    assert agree(repo) == [repo.workdir, on_main]


@pytest.mark.parametrize("op", ["rebase", "bisect"])
def test_detached_worktree_busy_with_the_branch_counts(repo: Repo, op: str) -> None:
    wt = add(repo, "wt", "-b", "feature")
    git(repo.workdir, "checkout", "-q", "--detach")
    if op == "rebase":
        env = {**os.environ, "GIT_SEQUENCE_EDITOR": "sed -i 1s/^pick/edit/"}
        sp.run(["git", "rebase", "-i", "HEAD~1"], cwd=wt, env=env, check=True,
               capture_output=True)
    else:
        git(wt, "bisect", "start")
    assert _worktrees_in_process(repo) is not None
    assert agree(repo, "refs/heads/feature") == [wt]


@pytest.mark.parametrize("how", ["deleted", "deleted-locked", "relative-record", "bad-head",
                                 "record-without-dotgit"])
def test_unusual_worktrees_are_left_to_git(repo: Repo, how: str) -> None:
    wt = add(repo, "wt", "--force", commit="main")
    admin = repo.common_dir / "worktrees" / "wt"
    if how in ("deleted", "deleted-locked"):
        if how == "deleted-locked":
            git(repo.workdir, "worktree", "lock", str(wt))
        shutil.rmtree(wt)
    elif how == "relative-record":
        (admin / "gitdir").write_text(os.path.relpath(wt / ".git", admin) + "\n")
    elif how == "bad-head":
        (admin / "HEAD").write_text("ref:refs/heads/main\n")
    elif how == "record-without-dotgit":
        (admin / "gitdir").write_text(f"{wt}\n")
    assert _worktrees_in_process(repo) is None
    agree(repo)


def test_separate_git_dir_is_left_to_git(tmp_path: Path) -> None:
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", f"--separate-git-dir={tmp_path / 's.git'}",
        str(work))
    git(work, "commit", "-q", "--allow-empty", "-m", "one")
    repo = Repo.open(work)
    assert _worktrees_in_process(repo) is None
    agree(repo)


def test_head_on_a_ref_outside_heads(repo: Repo) -> None:
    git(repo.workdir, "symbolic-ref", "HEAD", "refs/remotes/origin/main")
    assert _worktrees_in_process(repo) is not None
    assert agree(repo) == []
