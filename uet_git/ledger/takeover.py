"""Taking over a run lock whose writer is dead (``uet resume``/``uet rollback`` after a kill).

The run lock (``lock.RunLock``) is an ``flock`` on ``RUN.lock``; the kernel drops it when the
last descriptor of that open file goes, which is normally the moment the writer dies. A
process the writer was forking at the moment of a ``kill -9`` of its group still holds a copy
of every descriptor until it execs (it left the group by ``setsid`` first, so the kill missed
it), and one that never execs holds it for as long as it lives: the lock then outlives the
writer whose pid ``RUN.owner`` names (seen once in 200 kills of the soak: "run RUN is being
written by another uet process" right after the kill, free a minute later).

``open_ledger`` opens the run as ``Ledger.open`` does; when the lock is held it waits up to
``TAKEOVER_WAIT`` for it while the recorded owner is dead, then gives the lock a new file
(unlink + create: the leftover holds a lock on the old, nameless file, and no writer is
behind it). Never while the owner lives, or when no owner is recorded (a writer between
taking the lock and writing its pid). Takeovers are serialised by ``RUN.takeover``, so two
recoveries cannot both replace the file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import filelock

from uet_git.gitrepo.repo import Repo
from uet_git.ledger.lock import LedgerBusy, lock_held, lock_path
from uet_git.ledger.writer import Ledger

TAKEOVER_WAIT = 2.0  # seconds a dead owner's lock is given to go by itself
_POLL = 0.05


def open_ledger(repo: Repo, run: str) -> Ledger:
    """``Ledger.open(repo, run)``, taking over the lock of a dead writer (module doc)."""
    try:
        return Ledger.open(repo, run)
    except LedgerBusy:
        if not take_over(repo, run):
            raise
    return Ledger.open(repo, run)


def owner_pid(repo: Repo, run: str) -> int | None:
    """The pid ``RUN.owner`` names, or None (no owner file, or not a pid)."""
    try:
        return int(lock_path(repo, run).with_suffix(".owner").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead: its descriptors are closed)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rfind(")") + 2:].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def take_over(repo: Repo, run: str, wait: float = TAKEOVER_WAIT) -> bool:
    """Make ``run``'s lock takeable when its recorded owner is dead: True when it is free now
    (it went by itself, or it has a new file), False when a live writer (or one that has not
    written its pid yet) holds it."""
    path = lock_path(repo, run)
    guard = filelock.FileLock(str(path.with_suffix(".takeover")), timeout=wait + 5,
                              thread_local=False)
    try:
        guard.acquire()
    except filelock.Timeout:
        return False
    try:
        deadline = time.monotonic() + wait
        while True:
            if not lock_held(repo, run):
                return True
            pid = owner_pid(repo, run)
            if pid is None or process_alive(pid):
                return False
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        path.with_suffix(".owner").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return True
    finally:
        guard.release(force=True)
