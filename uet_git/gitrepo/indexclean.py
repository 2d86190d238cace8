"""A checkout's index read in process, and whether it settles a landing's look without git.

libgit2 reads the index only where it reads it as git does (``_libgit2_reads``: no split index,
no sparse checkout). ``_clean_by_index`` says "``git status`` would surely find nothing where
the landing writes", so the look starts no git process; on any doubt it says no and git is
asked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pygit2
from pygit2.ffi import C, ffi

from uet_git.gitrepo.landpaths import _GITLINK, _LINK, _Ent, _in_region, _landed_paths
from uet_git.gitrepo.objects import peel_tree
from uet_git.gitrepo.repo import Repo

# git's index entry flags that make status answer other than by stat data: assume-valid, and
# (extended) intent-to-add, skip-worktree.
_ASSUME_VALID = 0x8000


def _clean_by_index(repo: Repo, checkout: Path, gitdir: Path, old: str,
                    changes: dict[str, tuple[_Ent | None, _Ent | None]],
                    path: Path | None = None) -> bool:
    """True when ``git status`` would certainly report no local change where the landing
    ``old -> new`` writes, decided without starting it: the index (read by libgit2) holds
    ``old``'s entries there and nothing else, and each such file's stat data is exactly what
    the index recorded, older than the index file (git's racy-entry rule, taken by the whole
    second). False means: ask git. A submodule, an unmerged index, an entry with a flag, a
    layout libgit2 does not read (split or sparse index) or an index replaced meanwhile are
    all left to git. ``path``: the index file (default: the checkout's own).

    A wrong "clean" would still lose nothing: ``read-tree -m -u`` checks each entry it
    replaces against the file (stat data, content when racy) and against ``old``, and
    refuses (a file the user deleted it writes back: there is no content of theirs to lose)."""
    if any(e is not None and e[1] == _GITLINK for pair in changes.values() for e in pair):
        return False
    path = path if path is not None else gitdir / "index"
    try:
        if not _libgit2_reads(gitdir):
            return False
        before = path.stat()
        index = _open_index(path)
        after = path.stat()
    except (OSError, pygit2.GitError, ValueError):
        return False
    if index is None:
        return False
    if (before.st_ino, before.st_mtime_ns, before.st_size) != \
            (after.st_ino, after.st_mtime_ns, after.st_size):
        return False
    if index.conflicts is not None:
        return False
    landed = _landed_paths(changes)
    try:
        staged = peel_tree(repo, old).diff_to_index(index)
    except (pygit2.GitError, ValueError):
        return False
    for delta in staged.deltas:
        for q in (delta.old_file.path, delta.new_file.path):
            if _in_region(q, changes, landed):
                return False
    racy_from = before.st_mtime_ns // 1_000_000_000
    for p, (o, _n) in changes.items():
        entry = C.git_index_get_bypath(index._index, os.fsencode(p), 0)
        if o is None:
            if entry != ffi.NULL:
                return False  # an entry the tree diff does not show (intent-to-add)
            continue
        if entry == ffi.NULL or entry.flags & _ASSUME_VALID or entry.flags_extended:
            return False
        if _entry(index, p) != o:
            return False
        try:
            st = os.lstat(checkout / p)
        except OSError:
            return False
        if o[1] == _LINK:
            if not stat.S_ISLNK(st.st_mode):
                return False
        elif not stat.S_ISREG(st.st_mode) or bool(st.st_mode & 0o100) != (o[1] == 0o100755):
            return False
        m_sec, m_ns = divmod(st.st_mtime_ns, 1_000_000_000)
        c_sec, c_ns = divmod(st.st_ctime_ns, 1_000_000_000)
        if m_sec >= racy_from:
            return False
        if (entry.mtime.seconds, entry.mtime.nanoseconds, entry.ctime.seconds,
                entry.ctime.nanoseconds, entry.dev, entry.ino, entry.uid, entry.gid,
                entry.file_size) != tuple(v & 0xFFFFFFFF for v in (
                    m_sec, m_ns, c_sec, c_ns, st.st_dev, st.st_ino, st.st_uid, st.st_gid,
                    st.st_size)):
            return False
    return True


def _libgit2_reads(gitdir: Path) -> bool:
    """Whether libgit2 reads the indexes in ``gitdir`` as git does: not a split index (its
    entries partly in ``sharedindex.*``), not a sparse checkout (whose index may hold
    directories)."""
    return not (gitdir / "info" / "sparse-checkout").exists() \
        and not any(n.startswith("sharedindex.") for n in os.listdir(gitdir))


def _open_index(path: Path) -> pygit2.Index | None:
    """The index file at ``path`` as libgit2 reads it, or None when it cannot. Opened with the
    C call: on a failure pygit2's constructor leaves an object that prints a traceback to
    stderr when it is collected."""
    ptr = ffi.new("git_index **")
    if C.git_index_open(ptr, os.fsencode(path)) != 0:
        return None
    return pygit2.Index.from_c(None, ptr)


def _entry(index: pygit2.Index, path: str) -> _Ent | None:
    """The stage-0 entry of ``path`` in ``index`` (None: none, or only unmerged stages)."""
    e = C.git_index_get_bypath(index._index, os.fsencode(path), 0)
    if e == ffi.NULL:
        return None
    return str(pygit2.Oid(raw=bytes(ffi.buffer(e.id.id)[:]))), int(e.mode)
