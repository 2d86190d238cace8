"""The worker slot's own git work: the HEAD pin and the reset to the patch in process (no git
process when libgit2 can do it, git's result either way), admin dirs found again after a
worktree is removed and re-added. Git processes are counted from git's own trace
(GIT_TRACE2_EVENT), on real repositories."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import worktrees
from uet_git.gitrepo.objects import make_commit
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.snapshot import snapshot_tree
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    pin_head,
    remove_worktree,
    reset_index,
    reset_worktree,
    vanished_worktrees,
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Repo, Path, str]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n",
                                         ".gitignore": "*.log\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    return repo, wt, base


def git_commands(trace: Path) -> list[str]:
    """The git commands git's trace saw start (its first argument after the options)."""
    if not trace.exists():
        return []
    names = []
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "cmd_name":
            names.append(event["name"])
    return names


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(path))
    return path


def _patch(repo: Repo, wt: Path, base: str) -> str:
    """What normalise does: the tool's files snapshotted into a commit on the base."""
    (wt / "a.txt").write_text("tool\n")
    (wt / "src" / "new.txt").write_text("new\n")
    (wt / "build.log").write_text("ignored\n")
    return make_commit(repo, snapshot_tree(repo, wt), [base], "patch\n")


def test_pin_head_starts_no_git_process(setup, trace: Path) -> None:
    repo, wt, base = setup
    patch = _patch(repo, wt, base)
    trace.unlink(missing_ok=True)
    pin_head(repo, wt, patch)
    assert git_commands(trace) == []
    assert git(wt, "rev-parse", "HEAD") == patch
    assert git(wt, "symbolic-ref", "-q", "HEAD", check=False) == ""  # detached
    # only HEAD moved: index and files stay as the tool left them
    assert "src/new.txt" in git(wt, "status", "--porcelain", "--untracked-files=all")


def test_reset_index_to_the_snapshotted_patch_starts_no_git_process(setup, trace: Path
                                                                     ) -> None:
    repo, wt, base = setup
    patch = _patch(repo, wt, base)
    trace.unlink(missing_ok=True)
    reset_index(repo, wt, patch)
    assert git_commands(trace) == []
    trace.unlink(missing_ok=True)
    assert git(wt, "rev-parse", "HEAD") == patch
    assert git(wt, "write-tree") == git(wt, "rev-parse", "HEAD^{tree}")
    # clean against the patch, the ignored file kept, as `git reset -q PATCH` leaves it
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == ""
    assert (wt / "build.log").read_text() == "ignored\n"


def test_reset_index_when_the_files_are_not_the_commit_is_git_reset(setup, trace: Path
                                                                     ) -> None:
    repo, wt, base = setup
    patch = _patch(repo, wt, base)
    (wt / "extra.txt").write_text("not in the patch\n")
    trace.unlink(missing_ok=True)
    reset_index(repo, wt, patch)
    assert "reset" in git_commands(trace)
    assert git(wt, "rev-parse", "HEAD") == patch
    assert git(wt, "write-tree") == git(wt, "rev-parse", "HEAD^{tree}")
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == "?? extra.txt"


def test_admin_dir_found_again_after_remove_and_re_add(setup) -> None:
    repo, wt, base = setup
    first = admin_dir(repo, wt)
    other = repo.uet_dir / "worktrees" / "1"
    add_worktree(repo, other, base)
    assert admin_dir(repo, other) != first
    remove_worktree(repo, wt)
    with pytest.raises(GitError):
        admin_dir(repo, wt)
    # re-added: git may give it another admin dir name; the cached one must not be trusted
    remove_worktree(repo, other)
    add_worktree(repo, other, base)
    add_worktree(repo, wt, base)
    assert (admin_dir(repo, wt) / "gitdir").read_text().strip() == str(wt.resolve() / ".git")
    assert (admin_dir(repo, other) / "gitdir").read_text().strip() == str(
        other.resolve() / ".git")


def test_reset_without_clean_for_a_new_checkout(setup, trace: Path) -> None:
    repo, _wt, base = setup
    fresh = repo.uet_dir / "worktrees" / "2"
    add_worktree(repo, fresh, base, checkout=False)
    trace.unlink(missing_ok=True)
    reset_worktree(repo, fresh, base, clean=False)
    ran = git_commands(trace)
    assert "checkout" in ran and "clean" not in ran
    assert (fresh / "src" / "b.txt").read_text() == "b\n"
    assert git(fresh, "status", "--porcelain", "--ignored") == ""


def test_a_vanished_slot_is_found_in_process_and_taken_over(setup, trace: Path) -> None:
    repo, wt, base = setup
    root = wt.parent
    other = root / "1"
    add_worktree(repo, other, base, lock_reason="uet worker pool")
    shutil.rmtree(other)  # deleted by hand: still registered (and locked) in git's records
    trace.unlink(missing_ok=True)
    assert vanished_worktrees(repo, root) == [other.resolve()]
    assert vanished_worktrees(repo, root / "elsewhere") == []
    assert git_commands(trace) == []
    # its path is still registered: the add takes it over (--force twice, the lock too)
    add_worktree(repo, other, base, lock_reason="uet worker pool")
    assert git(other, "rev-parse", "HEAD") == base
    assert vanished_worktrees(repo, root) == []
    listed = git(repo.workdir, "worktree", "list", "--porcelain").splitlines()
    assert listed.count(f"worktree {other.resolve()}") == 1


def _reset_runs(repo: Repo, wt: Path, base: str, trace: Path) -> list[str]:
    trace.unlink(missing_ok=True)
    reset_worktree(repo, wt, base)
    ran = git_commands(trace)
    trace.unlink(missing_ok=True)
    return ran


def test_a_reset_cleans_only_when_something_is_there_to_clean(setup, trace: Path) -> None:
    repo, wt, base = setup
    assert "clean" not in _reset_runs(repo, wt, base, trace)  # nothing but tracked files
    leftovers: list[Callable[[], object]] = [
        lambda: (wt / "untracked.txt").write_text("x\n"),
        lambda: (wt / "build.log").write_text("ignored\n"),
        lambda: (wt / "src" / "empty").mkdir(),
        lambda: (wt / "new" / "deep").mkdir(parents=True),
        lambda: os.symlink("src", wt / "src-link"),
        lambda: (wt / "sub" / ".git").mkdir(parents=True),
        lambda: os.symlink("b.txt", wt / "src" / "b-link"),
    ]
    for make in leftovers:
        make()
        assert "clean" in _reset_runs(repo, wt, base, trace)
        assert git(wt, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
        assert sorted(p.name for p in wt.iterdir()) == [".git", ".gitignore", "a.txt", "src"]
        assert sorted(p.name for p in (wt / "src").iterdir()) == ["b.txt"]
    # a tracked file the tool deleted or changed: checkout restores it, nothing to clean
    (wt / "a.txt").unlink()
    (wt / "src" / "b.txt").write_text("changed\n")
    assert "clean" not in _reset_runs(repo, wt, base, trace)
    assert (wt / "a.txt").read_text() == "a\n" and (wt / "src" / "b.txt").read_text() == "b\n"


def test_a_large_index_is_left_to_git(setup, trace: Path, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    repo, wt, base = setup
    monkeypatch.setattr(worktrees, "SMALL_CHECKOUT", 2)  # this index has 3 entries
    patch = _patch(repo, wt, base)
    trace.unlink(missing_ok=True)
    reset_index(repo, wt, patch)
    assert "reset" in git_commands(trace)
    trace.unlink(missing_ok=True)
    assert git(wt, "rev-parse", "HEAD") == patch
    assert "clean" in _reset_runs(repo, wt, base, trace)  # what the tool left: git cleans
    assert git(wt, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
