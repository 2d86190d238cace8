"""A checkout's ``index.lock`` held through a landing, and the checkout updated under it.

``_Held`` takes git's own lock, works on a copy of the index (``uet-ff-index``) and commits it
the way git commits a lock; ``_update`` runs ``read-tree -m -u`` on that copy, in two steps
through a halfway tree at the ``mid-checkout`` crash point. The crash points of the landing
(tests only; ``gitrepo.branch`` lists them) live here, the lowest module that has one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from uet_git.gitrepo.checkouts import _SAFE, _git
from uet_git.gitrepo.landpaths import _Ent
from uet_git.gitrepo.refs import ZERO_OID
from uet_git.gitrepo.repo import Repo

CRASH_ENV = "UET_BRANCH_CRASH"
CRASH_POINTS = ("after-index-lock", "mid-checkout", "before-ref", "after-ref", "mid-index-commit")
TMP_INDEX = "uet-ff-index"


def crash_point(name: str) -> None:
    """End the process here when ``UET_BRANCH_CRASH`` names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


class _Held:
    """``<gitdir>/index.lock`` held by us, with the copy of the index we work on."""

    def __init__(self, repo: Repo, checkout: Path, gitdir: Path) -> None:
        self.repo = repo
        self.checkout = checkout
        self.gitdir = gitdir
        self.lock = gitdir / "index.lock"
        self.index = gitdir / "index"
        self.tmp = gitdir / TMP_INDEX
        self.held = False

    def acquire(self) -> None:
        fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
        self.held = True
        _drop_tmp(self.gitdir)
        if self.index.exists():
            # copy2: the index's mtime is what git's racy-entry check compares file times to.
            shutil.copy2(self.index, self.tmp)

    @property
    def env(self) -> dict[str, str]:
        return {"GIT_INDEX_FILE": str(self.tmp)}

    def commit(self) -> None:
        """Make the copy the index: git's own protocol (the lock file renamed onto the index)."""
        os.replace(self.tmp, self.lock)
        crash_point("mid-index-commit")
        os.replace(self.lock, self.index)
        self.held = False

    def release(self) -> None:
        _drop_tmp(self.gitdir)
        if self.held:
            self.lock.unlink(missing_ok=True)
            self.held = False


def _drop_tmp(gitdir: Path) -> None:
    for name in (TMP_INDEX, TMP_INDEX + ".lock"):
        (gitdir / name).unlink(missing_ok=True)


def _read_tree(h: _Held, a: str, b: str) -> str | None:
    # read-tree trusts the index's stat data: the copy must be current where it writes, or a
    # file merely touched (or a checkout copied elsewhere) reads as "not uptodate". The look
    # under the lock found it so, or refreshed it (``_local_changes`` with ``held``).
    proc = h.repo.git(*_SAFE, "read-tree", "-m", "-u", a, b, cwd=h.checkout, env=h.env,
                      check=False)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0].removeprefix("error: ").removeprefix("fatal: ") if lines else "read-tree failed"


def _halfway_tree(h: _Held, old: str, changes: dict[str, tuple[_Ent | None, _Ent | None]]
                  ) -> str:
    """``old`` with the first half of ``changes`` applied, whole top-level groups at a time (a
    file/directory swap is never split), written through a scratch index."""
    scratch = {"GIT_INDEX_FILE": str(h.gitdir / (TMP_INDEX + "-half"))}
    items = sorted(changes.items())
    lines = b""
    taken = 0
    last_top = None
    for path, (_o, n) in items:
        top = path.split("/")[0]
        if taken >= len(items) // 2 and top != last_top:
            break
        ent = f"0 {ZERO_OID}\t" if n is None else f"{n[1]:06o} {n[0]}\t"
        lines += ent.encode() + os.fsencode(path) + b"\0"
        taken, last_top = taken + 1, top
    try:
        _git(h.repo, h.checkout, "read-tree", old, env=scratch)
        _git(h.repo, h.checkout, "update-index", "-z", "--add", "--remove", "--replace",
             "--index-info", env=scratch, input=lines)
        return _git(h.repo, h.checkout, "write-tree", env=scratch).decode().strip()
    finally:
        Path(scratch["GIT_INDEX_FILE"]).unlink(missing_ok=True)


def _update(h: _Held, old: str, new: str, changes: dict[str, tuple[_Ent | None, _Ent | None]]
            ) -> str | None:
    """Index copy (refreshed) and files of one checkout from ``old`` to ``new``, which change
    ``changes``; None or git's reason. No change: nothing to write."""
    if not changes:
        return None
    if os.environ.get(CRASH_ENV) == "mid-checkout":
        mid = _halfway_tree(h, old, changes)
        err = _read_tree(h, old, mid)
        if err is None:
            crash_point("mid-checkout")
        return err
    return _read_tree(h, old, new)


__all__ = ["CRASH_ENV", "CRASH_POINTS", "TMP_INDEX", "crash_point"]
