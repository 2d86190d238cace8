"""The run lock (one writer per run) and the removal of ref locks a killed writer left.

One writer per run: a non-blocking ``filelock`` on ``<common git dir>/uet/locks/RUN.lock``
(a second writer gets ``LedgerBusy`` at once, naming the holder's pid from ``RUN.owner``); the
compare-and-swap old values of every ref transaction are the second line of defence.
Readers never lock.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from uet_git.errors import UetError
from uet_git.gitrepo import Repo

if TYPE_CHECKING:
    import filelock

STALE_LOCK_AGE = 1.0  # seconds: a ref lock this old under a held run lock is a dead writer's
_OWNER_WAIT = 0.5  # seconds a loser waits for the winner to write its pid


class LedgerBusy(UetError):
    """Another process (or Ledger object) holds this run's writer lock."""


def lock_path(repo: Repo, run: str) -> Path:
    return repo.uet_dir / "locks" / f"{run}.lock"


class RunLock:
    """The held writer lock of one run; ``release()`` is idempotent."""

    def __init__(self, lock: filelock.BaseFileLock, owner: Path) -> None:
        self._lock = lock
        self._owner = owner
        self._held = True

    @classmethod
    def acquire(cls, repo: Repo, run: str) -> RunLock:
        """Take ``run``'s lock without waiting; ``LedgerBusy`` when someone holds it."""
        path = lock_path(repo, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        owner = path.with_suffix(".owner")
        import filelock  # why: ~15 ms of imports; readers (status) come here only for paths
        lock = filelock.FileLock(str(path), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise LedgerBusy(
                f"run {run} is being written by another uet process (pid {_holder(owner)})"
            ) from None
        owner.write_text(f"{os.getpid()}\n")
        return cls(lock, owner)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        with contextlib.suppress(OSError):
            self._owner.unlink(missing_ok=True)
        self._lock.release(force=True)


def _holder(owner: Path) -> str:
    # The winner writes its pid just after taking the lock: give it a moment.
    deadline = time.monotonic() + _OWNER_WAIT
    while True:
        try:
            return owner.read_text().split()[0]
        except (OSError, IndexError):
            if time.monotonic() > deadline:
                return "unknown"
            time.sleep(0.01)


def lock_held(repo: Repo, run: str) -> bool:
    """True when a writer holds ``run``'s lock (tested by trying it, never waiting)."""
    path = lock_path(repo, run)
    if not path.exists():
        return False
    import filelock  # why: see RunLock.acquire
    lock = filelock.FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release(force=True)
    return False


def ref_lock_files(repo: Repo, run: str) -> list[Path]:
    """Lock files of ``run``'s refs (``refs/uet/*/RUN.lock``, ``*/RUN/WS.lock``...)."""
    d = repo.common_dir / "refs" / "uet"
    pats = [f"*/{run}.lock", f"*/{run}/*.lock", f"patches/{run}/*/*.lock"]
    return sorted({p for pat in pats for p in d.glob(pat)})


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return STALE_LOCK_AGE


def clear_stale_ref_locks(repo: Repo, run: str) -> list[str]:
    """Remove ref lock files of ``run`` left by a dead writer; returns their ref names. Call
    it holding the run lock. A live git holds a ref lock for milliseconds, so a lock is stale
    once it is older than ``STALE_LOCK_AGE`` (wait for that, at most once)."""
    locks = ref_lock_files(repo, run)
    if not locks:
        return []
    deadline = time.time() + STALE_LOCK_AGE
    while True:
        young = [p for p in locks if p.exists() and _age(p) < STALE_LOCK_AGE]
        if not young or time.time() > deadline:
            break
        time.sleep(0.05)
    removed = []
    for p in locks:
        if p.exists() and _age(p) >= STALE_LOCK_AGE:
            p.unlink(missing_ok=True)
            rel = p.relative_to(repo.common_dir).as_posix()
            removed.append(rel.removesuffix(".lock"))
    return removed
