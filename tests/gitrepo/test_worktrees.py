"""Worktrees under the common git dir: add, reset (reuse), repair, remove, dirty paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    dirty_paths,
    list_worktrees,
    remove_worktree,
    reset_index,
    reset_worktree,
    worktree_head,
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Repo, Path, str, str]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n",
                                         ".gitignore": "*.log\n.venv/\n"})
    first = git(path, "rev-parse", "HEAD")
    (path / "a.txt").write_text("a2\n")
    git(path, "commit", "-qam", "second")
    second = git(path, "rev-parse", "HEAD")
    repo = Repo.open(path)
    return repo, repo.uet_dir / "worktrees" / "0", first, second


def _status(path: Path) -> str:
    return git(path, "status", "--porcelain", "--ignored", "--untracked-files=all")


def test_add_is_detached_and_invisible_to_the_user(setup) -> None:
    repo, wt, first, _ = setup
    add_worktree(repo, wt, first, lock_reason="uet test")
    assert git(wt, "rev-parse", "HEAD") == first
    assert git(wt, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert (wt / "a.txt").read_text() == "a\n"
    assert _status(repo.workdir) == ""
    infos = {i.path.resolve(): i for i in list_worktrees(repo)}
    assert infos[wt.resolve()].locked and infos[wt.resolve()].head == first
    assert infos[wt.resolve()].branch is None
    assert worktree_head(repo, wt) == first
    with pytest.raises(GitError):
        add_worktree(repo, wt, first)  # non-empty directory


def test_reset_leaves_no_leftovers(setup) -> None:
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    # Everything a tool might leave: edits, new/staged/ignored files, a commit, a lost index.lock
    (wt / "a.txt").write_text("tool edit\n")
    (wt / "src" / "b.txt").unlink()
    (wt / "new.txt").write_text("new\n")
    (wt / "deep" / "dir").mkdir(parents=True)
    (wt / "deep" / "dir" / "f").write_text("x")
    (wt / "x.log").write_text("log\n")
    (wt / "staged.txt").write_text("s\n")
    git(wt, "add", "staged.txt")
    git(wt, "commit", "-qm", "tool commit", "--", "staged.txt")
    (admin_dir(repo, wt) / "index.lock").write_text("")
    assert dirty_paths(repo, wt) == ["a.txt", "deep/dir/f", "new.txt", "src/b.txt"]
    reset_worktree(repo, wt, second)
    assert git(wt, "rev-parse", "HEAD") == second
    assert _status(wt) == ""
    assert (wt / "a.txt").read_text() == "a2\n"
    assert not (wt / "staged.txt").exists() and not (wt / "deep").exists()
    assert dirty_paths(repo, wt) == []


def test_reset_keep_ignored_keeps_ignored_files_only(setup) -> None:
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    (wt / ".venv" / "lib").mkdir(parents=True)
    (wt / ".venv" / "lib" / "dep.py").write_text("cached\n")
    (wt / "untracked.txt").write_text("u\n")
    reset_worktree(repo, wt, second, keep_ignored=True)
    assert (wt / ".venv" / "lib" / "dep.py").read_text() == "cached\n"
    assert not (wt / "untracked.txt").exists()
    reset_worktree(repo, wt, second, keep_ignored=False)
    assert not (wt / ".venv").exists()


def test_reset_repairs_a_replaced_dot_git_and_a_half_done_merge(setup) -> None:
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    git(wt, "checkout", "-q", "-b", "side")
    (wt / "a.txt").write_text("side\n")
    git(wt, "commit", "-qam", "side")
    git(wt, "checkout", "-q", "--detach", second)
    git(wt, "merge", "side", check=False)  # conflict in a.txt
    assert (admin_dir(repo, wt) / "MERGE_HEAD").exists()
    reset_worktree(repo, wt, first)
    assert not (admin_dir(repo, wt) / "MERGE_HEAD").exists()
    assert _status(wt) == ""
    # A tool replaces the .git file with a directory of its own.
    (wt / ".git").unlink()
    (wt / ".git").mkdir()
    (wt / ".git" / "HEAD").write_text("garbage\n")
    assert admin_dir(repo, wt)  # still found from the common dir
    reset_worktree(repo, wt, second)
    assert (wt / ".git").is_file()
    assert git(wt, "rev-parse", "HEAD") == second and _status(wt) == ""


def test_remove_locked_worktree(setup) -> None:
    repo, wt, first, _ = setup
    add_worktree(repo, wt, first, lock_reason="uet test")
    (wt / "dirty.txt").write_text("x")
    remove_worktree(repo, wt)
    assert not wt.exists()
    assert all(i.path.resolve() != wt.resolve() for i in list_worktrees(repo))
    assert git(repo.workdir, "worktree", "list", "--porcelain").count("worktree ") == 1
    # A registered worktree whose directory vanished can be created again at the same path.
    add_worktree(repo, wt, first, lock_reason="uet test")
    os.rename(wt, wt.with_name("moved"))
    add_worktree(repo, wt, first, lock_reason="uet test")
    assert git(wt, "rev-parse", "HEAD") == first


def test_admin_dir_of_a_non_worktree_is_an_error(setup, tmp_path: Path) -> None:
    repo, *_ = setup
    with pytest.raises(GitError):
        admin_dir(repo, tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
def test_reset_and_remove_survive_unwritable_directories(setup) -> None:
    repo, wt, first, _ = setup
    add_worktree(repo, wt, first)
    locked = wt / "locked" / "deeper"
    locked.mkdir(parents=True)
    (locked / "f").write_text("x")
    locked.chmod(0o500)
    (wt / "locked").chmod(0o500)
    reset_worktree(repo, wt, first)
    assert not (wt / "locked").exists()
    (wt / "ro").mkdir()
    (wt / "ro" / "f").write_text("x")
    (wt / "ro").chmod(0o500)
    remove_worktree(repo, wt)
    assert not wt.exists()


def test_reset_from_a_branch_a_conflicted_index_and_assume_unchanged(setup) -> None:
    """One ``checkout -f`` puts the worktree at the commit whatever the tool left: a branch of
    its own checked out (never moved by the reset), unmerged index entries, assume-unchanged
    and skip-worktree bits hiding edits; worktree_head follows HEAD (None when unborn)."""
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    git(wt, "checkout", "-qb", "tool-branch")
    (wt / "a.txt").write_text("tool\n")
    git(wt, "commit", "-qam", "tool on its branch")
    tool_commit = git(wt, "rev-parse", "HEAD")
    assert worktree_head(repo, wt) == tool_commit
    git(wt, "merge", "-q", second, check=False)  # conflicts on a.txt: unmerged entries
    assert "a.txt" in git(wt, "diff", "--name-only", "--diff-filter=U")
    reset_worktree(repo, wt, second)
    assert git(wt, "rev-parse", "HEAD") == second == worktree_head(repo, wt)
    assert git(wt, "symbolic-ref", "-q", "HEAD", check=False) == ""
    assert git(repo.workdir, "rev-parse", "refs/heads/tool-branch") == tool_commit
    assert _status(wt) == "" and (wt / "a.txt").read_text() == "a2\n"
    git(wt, "update-index", "--assume-unchanged", "a.txt")
    git(wt, "update-index", "--skip-worktree", "src/b.txt")
    (wt / "a.txt").write_text("hidden edit\n")
    (wt / "src" / "b.txt").write_text("hidden too\n")
    reset_worktree(repo, wt, first)
    assert (wt / "a.txt").read_text() == "a\n" and (wt / "src" / "b.txt").read_text() == "b\n"
    assert git(wt, "ls-files", "-v").split() == [
        "H", ".gitignore", "H", "a.txt", "H", "src/b.txt"]
    git(wt, "checkout", "-q", "--orphan", "unborn")
    assert worktree_head(repo, wt) is None
    reset_worktree(repo, wt, second)
    assert worktree_head(repo, wt) == second and _status(wt) == ""


def test_reset_index_moves_head_and_index_not_files(setup) -> None:
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    (wt / "a.txt").write_text("a2\n")  # the files of `second`, as a snapshot left them
    (wt / "x.log").write_text("ignored\n")
    reset_index(repo, wt, second)
    assert worktree_head(repo, wt) == second
    assert git(wt, "status", "--porcelain") == ""
    assert (wt / "x.log").read_text() == "ignored\n"
    # Files differing from the commit stay as they are (a mixed reset).
    (wt / "a.txt").write_text("mine\n")
    reset_index(repo, wt, first)
    assert worktree_head(repo, wt) == first
    assert (wt / "a.txt").read_text() == "mine\n"
    assert git(wt, "diff", "--cached", "--name-only") == ""


def test_reset_index_repairs_a_broken_index(setup) -> None:
    repo, wt, first, second = setup
    add_worktree(repo, wt, first)
    (wt / "a.txt").write_text("a2\n")
    (wt / "x.log").write_text("ignored\n")
    (admin_dir(repo, wt) / "index").write_bytes(b"garbage")
    reset_index(repo, wt, second)
    assert worktree_head(repo, wt) == second
    assert git(wt, "status", "--porcelain") == ""
    assert (wt / "x.log").exists()
