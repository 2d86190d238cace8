"""Every pygit2 handle uet opens is released when done with (``handles.py``): slot resets,
snapshots, a fresh ledger handle, a thread's own handle. Measured as what libgit2's object
caches hold (``pygit2.settings.cached_memory``, bytes of cached commits and trees) with the
cyclic collector off: a handle left to the collector keeps what it read cached, so each one
left behind adds to the count; one freed takes its share back out."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import handles
from uet_git.gitrepo.cleanat import clean_at
from uet_git.gitrepo.odb import get_commit, has_object, list_tree
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import snapshot_tree
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    pin_head,
    reset_index,
    reset_worktree,
    worktree_head,
)

ROUNDS = 12


@pytest.fixture
def no_collector() -> Iterator[None]:
    """Only reference counting frees anything: what the cyclic collector would have
    reclaimed some time later stays counted."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def slot(tmp_path: Path) -> tuple[Repo, Path, str, str]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n"})
    first = git(path, "rev-parse", "HEAD")
    (path / "a.txt").write_text("a2\n")
    git(path, "commit", "-qam", "second")
    second = git(path, "rev-parse", "HEAD")
    repo = Repo.open(path)
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, first)
    return repo, wt, first, second


def _cached() -> int:
    return pygit2.settings.cached_memory[0]


def _commit_bytes(repo: Repo, oid: str) -> int:
    """What one handle caches on reading the commit and its tree."""
    pg = repo._pg
    commit = pg[oid]
    return len(commit.read_raw()) + len(pg[commit.tree_id].read_raw())


def test_the_object_cache_is_bounded_at_import() -> None:
    assert pygit2.settings.cached_memory[1] == handles.OBJECT_CACHE_BYTES
    assert handles.OBJECT_CACHE_BYTES < 256 * 1024 * 1024  # libgit2's default


def test_slot_resets_and_snapshots_leave_no_handle_behind(
        slot: tuple[Repo, Path, str, str], no_collector: None) -> None:
    repo, wt, first, second = slot
    admin = admin_dir(repo, wt)
    reset_worktree(repo, wt, second)  # this process's own handle reads what it reads once
    snapshot_tree(repo, wt)
    before = _cached()
    for i in range(ROUNDS):
        at = first if i % 2 else second
        reset_worktree(repo, wt, at)
        assert clean_at(admin, wt, at)
        assert worktree_head(repo, wt) == at
        (wt / "new.txt").write_text(f"{i}\n")
        snapshot_tree(repo, wt)
        reset_index(repo, wt, at)
        pin_head(repo, wt, at)
    grown = _cached() - before
    assert grown < ROUNDS * _commit_bytes(repo, first) // 2, grown
    # The slot ends exactly where the last reset put it (git's view).
    assert git(wt, "rev-parse", "HEAD") == first
    assert git(wt, "status", "--porcelain", "--untracked-files=all") == "?? new.txt"


def test_fresh_handles_are_freed_with_their_copy(tmp_path: Path, no_collector: None) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n"})
    repo = Repo.open(path)
    head = git(path, "rev-parse", "HEAD")
    before = _cached()
    for _ in range(ROUNDS):
        fresh = repo.fresh()
        assert has_object(fresh, head)
        assert get_commit(fresh, head).oid == head
        assert [e.name for e in list_tree(fresh, head)] == ["a.txt", "src"]
        del fresh
    grown = _cached() - before
    assert grown < ROUNDS * _commit_bytes(repo.fresh(), head) // 2, grown


def test_a_threads_handle_is_freed_when_the_thread_ends(tmp_path: Path,
                                                        no_collector: None) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n"})
    repo = Repo.open(path)
    head = git(path, "rev-parse", "HEAD")
    seen: list[str] = []

    def read() -> None:
        seen.append(get_commit(repo, head).tree)
        seen.extend(e.oid for e in list_tree(repo, head))

    before = _cached()
    for _ in range(ROUNDS):
        t = threading.Thread(target=read)
        t.start()
        t.join()
    assert len(seen) == 3 * ROUNDS and len(set(seen)) == 3
    grown = _cached() - before
    assert grown < ROUNDS * _commit_bytes(repo, head) // 2, grown


def test_objects_read_in_a_block_stay_usable_after_it(tmp_path: Path) -> None:
    """``opened`` frees the handle; a tree taken out of the block still answers (libgit2
    reopens what it needs), as git reads it."""
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "src/b.txt": "b\n"})
    with handles.opened(path / ".git") as wr:
        tree = wr.head.peel(pygit2.Commit).tree
    assert str(tree["src/b.txt"].id) == git(path, "rev-parse", "HEAD:src/b.txt")
