"""Landing on a branch like ``git merge --ff-only``, stricter, and recoverable after a kill.

``fast_forward(repo, ref, old, new)`` moves ``ref`` from ``old`` to ``new`` with a
compare-and-swap and updates every checkout that has ``ref`` checked out (the main worktree and
linked ones) the way ``git read-tree -m -u old new`` does: only the paths the landing changes
are written, so unrelated local changes (unstaged, staged, a dirty submodule) stay byte for
byte. It refuses (``ff_blockers``, one line each) where git would be careless or break something:
a local change to a landed path, an ignored or untracked file where the landing puts a file
(``read-tree -m -u`` silently replaces an ignored one), a rebase, merge, cherry-pick, revert,
bisect or ``git am`` in progress, a held ``index.lock``.

Order, chosen so a crash at any point is recoverable and a lost race changes nothing:

1. per checkout, take ``<gitdir>/index.lock`` (git's own lock: no other git writes the index
   while we work, and a user's ``git commit`` in the window fails instead of committing a mix),
   and copy the index (mtime kept: git's racy-entry check compares against it) to
   ``<gitdir>/uet-ff-index``; then look at the blockers again (a file created since the first
   look is not overwritten): in process when the copy settles it (``_clean_by_index``), else
   ``git status`` reading the copy and refreshing its stat data;
2. run ``read-tree -m -u old new`` on that copy (``GIT_INDEX_FILE``): git checks every entry
   and writes the files; the real index is still the one at ``old``;
3. CAS ``ref: old -> new``; on failure (or an exception, Ctrl-C included) every checkout goes
   back to ``old`` path by path from the real index, which was never replaced;
4. per checkout, rename the copy onto ``index.lock`` and ``index.lock`` onto ``index`` (git's
   commit of a lock), which also releases the lock.

Files before the ref: a lost race then never leaves a branch whose checkout shows the inverse
of the landing as local changes. A kill leaves: the lock (steps 1-4), files half at ``new``
(step 2), a ref at ``new`` with an index at ``old`` (between 3 and 4). ``recover`` makes every
checkout agree with wherever the ref is, path by path, by content (hashed raw, then as
``git add`` would through autocrlf or a filter), never touching a file that holds neither
side's version (the user's) and never going through a symbolic link.

Every git started in a user's checkout goes through ``Repo.git`` (filter drivers pinned to the
trusted ones), with hooks and fsmonitor off; those that run no filter (``ls-files``,
``check-ignore``, ``rev-parse``) may go through ``run_git``. A checkout's git dir and a HEAD
that names the branch are read in process when laid out the way git makes them; git is asked
about anything else (``git_dir_of``, ``_head_oid``). The first look (``look``) is taken once
per move: ``journal.journaled_move`` takes it before recording the intent and hands it on.

Crash points for the fault-injection tests: when the environment variable ``UET_BRANCH_CRASH``
names one, the process ends with ``os._exit(137)`` there (as a ``kill -9`` would):

- ``after-index-lock``: the first checkout's ``index.lock`` was just taken;
- ``mid-checkout``: half the changed paths are written (the update then runs as two
  ``read-tree`` steps through an intermediate tree, which leaves what a kill inside git's own
  checkout leaves: some files new, the real index old);
- ``before-ref``: every checkout's files are at ``new``, the ref still at ``old``;
- ``after-ref``: the ref moved, no index committed yet;
- ``mid-index-commit``: the first checkout's new index sits in ``index.lock``, not yet renamed.

The pieces, lowest first (none imports a higher one): ``landpaths`` (the paths a landing
changes), ``checkouts`` (which checkouts have the branch, their git dirs and HEADs),
``indexclean`` (the index read in process), ``indexlock`` (the held lock, the index copy, the
``read-tree``, the crash points), ``ffblockers`` (what blocks, one line each), ``converge`` (a
checkout brought to one side path by path: the undo and ``recover``). This module holds the
order: ``look``, ``fast_forward``, its undo, and ``recover``.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from uet_git.gitrepo.checkouts import checkouts_of, git_dir_of, in_progress
from uet_git.gitrepo.converge import _converge
from uet_git.gitrepo.ffblockers import _a, _blockers, _names, _short
from uet_git.gitrepo.indexlock import CRASH_POINTS, _drop_tmp, _Held, _update, crash_point
from uet_git.gitrepo.landpaths import _Ent, _tree_changes
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo


@dataclass(frozen=True)
class FFResult:
    moved: bool
    updated_checkouts: list[Path]
    problem: str | None


@dataclass(frozen=True)
class Look:
    """A first look at a fast-forward ``ref: old -> new`` (``look``): the checkouts of ``ref``,
    their git dirs, the paths the landing changes, and what blocks it, one line each."""

    ref: str
    old: str
    new: str
    checkouts: list[Path]
    gitdirs: list[Path]
    changes: dict[str, tuple[_Ent | None, _Ent | None]]
    problems: list[str]


def look(repo: Repo, ref: str, old: str, new: str) -> Look:
    """The checkouts of ``ref`` (which the caller has just read at ``old``) and what keeps a
    fast-forward to ``new`` from updating them; ``fast_forward(..., looked=)`` does not look
    again before it takes the locks (it always looks again under them)."""
    checkouts = checkouts_of(repo, ref)
    gitdirs = [git_dir_of(co, repo) for co in checkouts]
    changes = _tree_changes(repo, old, new)
    problems = [line for co, gd in zip(checkouts, gitdirs, strict=True)
                for line in _blockers(repo, co, gd, old, new, changes, ref=ref)]
    return Look(ref, old, new, checkouts, gitdirs, changes, problems)


def fast_forward(repo: Repo, ref: str, old: str, new: str, *, looked: Look | None = None
                 ) -> FFResult:
    """Move ``ref`` from ``old`` to ``new`` (a descendant) with a CAS and update every checkout
    of it (see the module doc for the order). Nothing moves when any checkout has a blocker.
    ``looked``: the caller's ``look`` at this very move, taken just before (found nothing in
    the way): it is not taken again before the locks."""
    if not is_ancestor(repo, old, new):
        return FFResult(False, [], f"{ref}: {_short(new)} does not contain {_short(old)}; "
                                   "not a fast-forward")
    current = repo.read_ref(ref)
    if current != old:
        return FFResult(False, [], f"{ref} is at {_short(current)}, not {_short(old)}")
    if looked is None or (looked.ref, looked.old, looked.new) != (ref, old, new) \
            or looked.problems:
        looked = look(repo, ref, old, new)
    if looked.problems:
        return FFResult(False, [], "; ".join(looked.problems))
    changes = looked.changes
    held: list[_Held] = []
    moved = False
    try:
        for co, gd in zip(looked.checkouts, looked.gitdirs, strict=True):
            h = _Held(repo, co, gd)
            try:
                h.acquire()
            except FileExistsError:
                _undo(repo, held, old, new)
                return FFResult(False, [], f"{h.lock} exists: another git command is running "
                                           f"in {co}; nothing landed")
            held.append(h)
            crash_point("after-index-lock")
            # Again under the lock: a file the user created (or an operation started) since the
            # first look must not be overwritten either; no git writes this index from now on.
            late = _blockers(repo, co, gd, old, new, changes, ref=ref, held=h)
            if late:
                _undo(repo, held[:-1], old, new)  # this checkout's files are not touched yet
                return FFResult(False, [], "; ".join(late))
            err = _update(h, old, new, changes)
            if err is not None:
                _undo(repo, held, old, new)
                return FFResult(False, [], f"{co}: updating the checkout would lose local files "
                                           f"({err}); nothing landed")
        crash_point("before-ref")
        try:
            repo.transaction().update(ref, new, old).commit()
        except RefConflict:
            problem = _undo(repo, held, old, new)
            now = repo.read_ref(ref)
            msg = f"{ref} moved to {_short(now)} while landing (expected {_short(old)})"
            return FFResult(False, [], f"{msg}; {problem}" if problem else msg)
        moved = True
        crash_point("after-ref")
        for h in held:
            h.commit()
        return FFResult(True, [h.checkout for h in held], None)
    except BaseException:
        # Interrupted (Ctrl-C also kills a git child half-way) or failed: leave each checkout
        # on the ref's side, as ``recover`` would.
        if not moved:
            with contextlib.suppress(Exception):
                _undo(repo, held, old, new)
        else:
            for h in held:
                if h.held and h.tmp.exists():
                    with contextlib.suppress(OSError):
                        h.commit()
        raise
    finally:
        for h in held:
            h.release()


def _undo(repo: Repo, held: list[_Held], old: str, new: str) -> str | None:
    """Put the files of checkouts updated (wholly or in part) back at ``old``. The real index
    was never replaced before the ref moved, so it is the truth: start again from a copy of it
    and go path by path (a ``read-tree`` killed half-way leaves files at ``new`` that its
    index copy does not know about). Returns what could not be put back, or None."""
    problems = []
    for h in held:
        _drop_tmp(h.gitdir)
        if h.index.exists():
            shutil.copy2(h.index, h.tmp)
        _, left = _converge(repo, h, old, new)
        h.commit()
        if left:
            problems.append(f"{h.checkout}: {_names(left)} hold neither side's content; left")
    return "; ".join(problems) or None


def recover(repo: Repo, ref: str, old: str, new: str, *, lock_owner_dead: bool,
            checkouts: list[Path] | None = None) -> str:
    """After a landing ``old -> new`` of ``ref`` was killed at any point, make every checkout
    of ``ref`` agree with wherever the ref is (``new``: finish; ``old``: undo), as git leaves
    a checkout after a completed or a never-started ``merge --ff-only``. A left ``index.lock``
    is removed only when ``lock_owner_dead`` (git records no owner). The ref is never moved.
    ``checkouts``: the checkouts of ``ref`` as the caller has just listed them
    (``checkouts_of``). Returns one line saying what was done."""
    at = repo.read_ref(ref)
    if at not in (old, new):
        return (f"{ref} is at {_short(at)}, neither {_short(old)} nor {_short(new)}: "
                "no checkout touched")
    other = old if at == new else new
    where = "finished the landing" if at == new else "undid the half-done landing"
    lines: list[str] = []
    for co in checkouts if checkouts is not None else checkouts_of(repo, ref):
        gd = git_dir_of(co, repo)
        h = _Held(repo, co, gd)
        note = ""
        op = in_progress(co, gd)
        if op is not None:
            # Started by the user after the crash (a landing refuses to start during one): its
            # index and files are the operation's now.
            lines.append(f"{co}: {_a(op)} is in progress; checkout left as it is")
            continue
        if h.lock.exists():
            if not lock_owner_dead:
                lines.append(f"{co}: {h.lock} is held and its owner is not known to be gone; "
                             "checkout left as it is")
                continue
            h.lock.unlink()
            note = f", removed the stale {h.lock}"
        try:
            h.acquire()
        except FileExistsError:
            lines.append(f"{co}: {h.lock} was taken by another git meanwhile; left as it is")
            continue
        try:
            changed, left = _converge(repo, h, at, other)
            h.commit()
        finally:
            h.release()
        if changed or note:
            msg = f"{co}: {where} at {_short(at)} ({changed} path{'s' * (changed != 1)}{note})"
        else:
            msg = f"{co}: already at {_short(at)}"
        if left:
            msg += f"; kept local edits in {_names(left)}"
        lines.append(msg)
    if not lines:
        return f"{ref} is at {_short(at)}; no checkout of it to recover"
    return "; ".join(lines)


__all__ = ["CRASH_POINTS", "FFResult", "Look", "checkouts_of", "crash_point", "fast_forward",
           "look", "recover"]
