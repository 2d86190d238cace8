"""Worktrees kept between runs: a released slot is taken by the next pool without an orphan
check, new slots are registered without a checkout under git's admin lock, ``prune_idle``
removes idle slots (never one in use or holding unrecorded work)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import filelock
import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.worktrees import add_worktree
from uet_git.workers.pool import WorktreePool, pool_root, prune_idle


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.open(make_repo(tmp_path / "repo", {"a.txt": "a\n", ".gitignore": ".venv/\n"}))


def _commit(repo: Repo, name: str, content: str) -> str:
    (repo.workdir / name).write_text(content)
    git(repo.workdir, "add", name)
    git(repo.workdir, "commit", "-qm", f"add {name}")
    return git(repo.workdir, "rev-parse", "HEAD")


def _worktrees(repo: Repo) -> list[str]:
    out = git(repo.workdir, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def test_a_kept_pool_leaves_its_slots_for_the_next_one(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    other = _commit(repo, "b.txt", "b\n")
    pool = WorktreePool(repo, size=1, keep=True)
    w = pool.acquire(base, "run1/ws/1")
    (w.path / "a.txt").write_text("the tool's change, recorded by the caller\n")
    (w.path / ".venv").mkdir()
    pool.release(w)
    pool.close(remove=True)
    assert _worktrees(repo)[1:] == [str(w.path)]
    meta = json.loads((pool.root / "0.json").read_text())
    assert meta["released"] is True and meta["label"] == "run1/ws/1"

    # The next run: the released slot is free (no orphan although it differs from its base),
    # and it is reset, not re-created.
    admin_before = sorted(p.name for p in (repo.common_dir / "worktrees").iterdir())
    pool = WorktreePool(repo, size=1, keep=True)
    assert pool.orphans() == []
    w2 = pool.acquire(other, "run2/ws/1")
    assert w2.slot == 0 and git(w2.path, "rev-parse", "HEAD") == other
    assert git(w2.path, "status", "--porcelain", "--ignored") == ""
    assert sorted(p.name for p in (repo.common_dir / "worktrees").iterdir()) == admin_before
    meta = json.loads((pool.root / "0.json").read_text())
    assert meta["released"] is False and meta["label"] == "run2/ws/1"
    pool.release(w2)
    pool.close(remove=True)
    # Without keep (--fresh-worktrees) close removes them, as before.
    pool = WorktreePool(repo, size=1, keep=False)
    pool.release(pool.acquire(base))
    pool.close(remove=True)
    assert _worktrees(repo) == [str(repo.workdir)]


def test_a_slot_not_released_is_still_an_orphan_of_a_kept_pool(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1, keep=True)
    w = pool.acquire(base, "run1/ws/1")
    (w.path / "a.txt").write_text("unrecorded\n")
    pool.close(remove=True)  # busy: its result never reached the ledger (a crash)
    pool = WorktreePool(repo, size=1, keep=True)
    assert [o.label for o in pool.orphans()] == ["run1/ws/1"]
    assert (w.path / "a.txt").read_text() == "unrecorded\n"
    pool.close()


def test_a_new_slot_is_checked_out_outside_the_admin_lock(tmp_path: Path) -> None:
    """When the first file of a new slot appears on disk, git's worktree admin lock is free
    again (the registration is all that needs it), so other workers can register theirs."""
    files = {f"d{i // 100}/f{i:04d}.txt": f"{i}\n" for i in range(1500)}
    repo = Repo.open(make_repo(tmp_path / "repo", files))
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    first = pool.root / "0" / "d0" / "f0000.txt"
    seen: list[bool] = []

    def watch() -> None:
        deadline = time.monotonic() + 20
        while not first.exists() and time.monotonic() < deadline:
            pass
        lock = filelock.FileLock(str(repo.uet_dir / "worktree-admin.lock"), timeout=0,
                                 thread_local=False, is_singleton=False)
        try:
            with lock:
                seen.append(True)
        except filelock.Timeout:
            seen.append(False)

    t = threading.Thread(target=watch)
    t.start()
    w = pool.acquire(base)
    t.join()
    assert seen == [True]
    assert git(w.path, "status", "--porcelain") == "" and (w.path / "d14/f1499.txt").exists()
    pool.release(w)
    pool.close(remove=True)


def test_a_slot_registered_without_checkout_by_a_crashed_run_is_reused(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    root = pool_root(repo)
    root.mkdir(parents=True)
    add_worktree(repo, root / "0", base, lock_reason="uet worker pool", checkout=False)
    (root / "0.json").write_text('{"base": null, "label": null, "preparing": true}')
    pool = WorktreePool(repo, size=1)
    assert pool.orphans() == []
    w = pool.acquire(base)
    assert w.slot == 0 and (w.path / "a.txt").read_text() == "a\n"
    assert git(w.path, "status", "--porcelain") == ""
    pool.release(w)
    pool.close(remove=True)


def test_prune_idle_removes_only_idle_recorded_slots(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=3, keep=True)
    ws = [pool.acquire(base, f"run1/ws{i}/1") for i in range(3)]
    (ws[1].path / "a.txt").write_text("unrecorded\n")  # slot 1 is never released: a crash
    pool.release(ws[0])
    pool.release(ws[2])
    pool.close(remove=True)
    assert prune_idle(repo, older_than=3600).removed == []  # all used just now
    live = WorktreePool(repo, size=1, keep=True)  # a live run holds every slot it adopted
    assert prune_idle(repo, older_than=0).removed == []
    live.close()

    res = prune_idle(repo, older_than=0, dry_run=True)
    assert res.removed == [ws[0].path, ws[2].path] and ws[2].path.exists()
    res = prune_idle(repo, older_than=0, now=time.time() + 10)
    assert res.removed == [ws[0].path, ws[2].path]
    assert [line.split(":")[0] for line in res.kept] == [str(ws[1].path)]
    assert not ws[2].path.exists() and not (pool.root / "2.json").exists()
    assert (ws[1].path / "a.txt").read_text() == "unrecorded\n"
    assert _worktrees(repo)[1:] == [str(ws[1].path)]
