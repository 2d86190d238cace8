"""Whether a worker slot already is exactly at a commit, decided in process.

A slot reset (``git checkout -f`` + ``git clean``) costs a git process or two even when the
slot holds exactly the commit it is reset to (the next workstream starts from the commit the
last one's acceptance ran on). ``clean_at`` answers "would that reset change anything?" without
git, and says yes (so git runs) whenever it is not sure: only a plain index (version 2 or 3, no
entry git would treat specially: conflicted, assume-unchanged, skip-worktree, intent-to-add, a
submodule; no required extension such as a split or sparse index), a detached HEAD file naming
the commit, no filter driver configured, the index's entries exactly the commit's tree, every
file as the index records it (libgit2's index-to-workdir diff: stat cache, re-hashing a file
whose stat changed or is racy, as ``git status`` does), and nothing in the worktree but the
index's paths and their directories (no untracked or ignored file, no empty or nested
directory).

``reset_clean`` proves all of that once, before its checkout, at the slot's own HEAD; libgit2's
checkout then writes only the paths that differ from the target, so afterwards only those are
looked at again (``_settled``: each written file's bytes and mode, each removed path and the
directories it emptied gone, the new index plain and equal to the target's tree).
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

import pygit2

from uet_git.gitrepo import handles

SMALL_CHECKOUT = 2000  # index entries up to which work in process beats a git process

_ENTRY_FIXED = 62  # stat data (40) + sha-1 (20) + flags (2)
_ASSUME_VALID = 0x8000
_EXTENDED = 0x4000
_STAGE = 0x3000
_NAME_MASK = 0x0FFF
_GITLINK = 0o160000
_MODE_FLAGS = struct.Struct(">24xI32xH")  # an entry's mode (at 24) and flags (at 60)


def index_paths(admin: Path, limit: int = SMALL_CHECKOUT) -> frozenset[str] | None:
    """The paths of the worktree's index (``<admin>/index``) when it is a plain one of at most
    ``limit`` entries, else None (git decides): see the module's docstring."""
    parsed = _parse_index(admin, limit)
    return parsed.paths if parsed is not None and not parsed.flagged else None


def hides_entries(admin: Path, limit: int = SMALL_CHECKOUT) -> bool:
    """Whether the index (of at most ``limit`` entries) flags an entry assume-unchanged,
    skip-worktree or intent-to-add: ``git checkout -f`` keeps those flags, and with them a
    file the tool changed (git takes it as up to date), so the index must go first."""
    parsed = _parse_index(admin, limit)
    return parsed is not None and parsed.flagged


@dataclass(frozen=True)
class _Parsed:
    """What one version of an index file says: its paths, the directories they lie in,
    whether any entry is flagged (see ``hides_entries``), whether a ``.gitattributes`` is
    among the paths (``_attributes_possible``)."""

    paths: frozenset[str]
    dirs: frozenset[str]
    flagged: bool
    attributes: bool


# index file -> (its identity: inode, size, mtime, ctime; the limit) and what it parsed to. git
# and libgit2 replace an index by renaming a new file over it (a new inode); one rewritten in
# place changes its ctime, which no process can set back.
_PARSED: dict[Path, tuple[tuple[int, ...], _Parsed | None]] = {}


def _parse_index(admin: Path, limit: int) -> _Parsed | None:
    """The index as ``_Parsed``; None when it is not a version 2 or 3 index of at most
    ``limit`` entries git would read as we do (conflicted, a submodule, a required
    extension, a name it cannot compare)."""
    index = admin / "index"
    try:
        with open(index, "rb") as f:
            st = os.fstat(f.fileno())
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, limit)
            cached = _PARSED.get(index)
            if cached is not None and cached[0] == key:
                return cached[1]
            data = f.read()
    except OSError:
        return None
    got = _parse_index_bytes(data, limit)
    parsed = None if got is None else _Parsed(
        frozenset(got[0]), frozenset(_dirs_of(got[0])), got[1],
        _names_attributes(got[0]))
    _PARSED[index] = (key, parsed)
    return parsed


def _names_attributes(paths: AbstractSet[str]) -> bool:
    """Whether one of ``paths`` is a ``.gitattributes`` file (at any depth)."""
    return any(p == ".gitattributes" or p.endswith("/.gitattributes") for p in paths)


def _dirs_of(files: AbstractSet[str]) -> set[str]:
    """Every directory (relative, no trailing slash) that holds one of ``files``."""
    dirs: set[str] = set()
    for f in files:
        i = f.rfind("/")
        while i > 0 and f[:i] not in dirs:
            dirs.add(f[:i])
            i = f.rfind("/", 0, i)
    return dirs


def _parse_index_bytes(data: bytes, limit: int) -> tuple[set[str], bool] | None:
    if len(data) < 32 or data[:4] != b"DIRC":
        return None
    version = int.from_bytes(data[4:8], "big")
    count = int.from_bytes(data[8:12], "big")
    if version not in (2, 3) or count > limit:
        return None
    end = len(data) - 20  # the trailing checksum
    pos, names, flagged = 12, [], False
    unpack = _MODE_FLAGS.unpack_from
    for _ in range(count):
        if pos + _ENTRY_FIXED > end:
            return None
        mode, flags = unpack(data, pos)
        if flags & _STAGE or mode == _GITLINK:
            return None
        start = pos + _ENTRY_FIXED
        if flags & (_ASSUME_VALID | _EXTENDED):
            flagged = True
            if flags & _EXTENDED:
                start += 2  # the extended flags (skip-worktree, intent-to-add)
        size = flags & _NAME_MASK
        if size == _NAME_MASK:  # a name of 0xFFF bytes or more: it ends at its NUL
            nul = data.find(b"\0", start, end)
            if nul < 0:
                return None
        else:
            nul = start + size
            if nul >= end or data[nul]:
                return None
        names.append(data[start:nul])
        pos += (nul - pos + 8) // 8 * 8  # 1 to 8 NULs pad the entry
    while pos < end:  # extensions: a lower-case signature is one git requires us to understand
        if pos + 8 > end or not data[pos:pos + 1].isupper():
            return None
        pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
    if pos != end:
        return None
    # One decode for all the names, NUL-separated (no name holds one: a name with a NUL
    # inside, shorter than its recorded length, comes out as one name too many).
    try:
        paths = b"\0".join(names).decode("utf-8").split("\0") if names else []
    except UnicodeDecodeError:
        return None
    return (set(paths), flagged) if len(paths) == count else None


def holds_only(path: Path, files: AbstractSet[str],
               dirs: AbstractSet[str] | None = None) -> bool:
    """Whether the worktree at ``path`` holds nothing but ``files`` (and their directories,
    ``dirs`` when the caller has them) beside its ``.git``: any other entry (untracked,
    ignored, an empty or untracked directory, a nested repository) is False. A tracked path
    whose type changed is the diff's business."""
    if dirs is None:
        dirs = _dirs_of(files)
    pending = [("", str(path))]
    try:
        while pending:
            prefix, current = pending.pop()
            with os.scandir(current) as it:
                for entry in it:
                    rel = prefix + entry.name
                    if rel in files or rel == ".git":
                        continue  # a tracked path, or the gitfile (repaired before this)
                    if rel in dirs and entry.is_dir(follow_symlinks=False):
                        pending.append((rel + "/", entry.path))
                        continue
                    return False
    except OSError:
        return False
    return True


def read_head(admin: Path) -> str | None:
    """The detached HEAD's commit id from ``<admin>/HEAD``, or None (a symbolic HEAD, a
    symbolic link, or not a files-backend HEAD)."""
    try:
        fd = os.open(admin / "HEAD", os.O_RDONLY | os.O_NOFOLLOW)
        try:
            text = os.read(fd, 100)
        finally:
            os.close(fd)
    except OSError:
        return None
    head = text[:-1].decode("ascii", "replace") if text.endswith(b"\n") else ""
    return head if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head) else None


def write_head(admin: Path, commit: str) -> bool:
    """Detach the worktree's HEAD at ``commit`` as git's files backend does (``HEAD.lock``
    created exclusively, written, renamed over ``HEAD``), without a reflog entry (nothing reads
    a slot's; its HEAD alone is the gc root). False, nothing changed, when the lock is held or
    ``HEAD`` is not a files-backend one (a reftable stub): the caller asks libgit2 or git."""
    if len(commit) not in (40, 64) or commit.strip("0123456789abcdef"):
        return False
    head, lock = admin / "HEAD", admin / "HEAD.lock"
    try:
        if head.read_bytes().startswith(b"ref: refs/heads/.invalid"):
            return False
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(commit.encode() + b"\n")
        os.replace(lock, head)
    except OSError:
        lock.unlink(missing_ok=True)
        return False
    return True


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same place once symbolic links are resolved: the same
    string (a trailing slash aside, as libgit2 writes a workdir) needs no resolving."""
    x, y = os.fspath(a), os.fspath(b)
    if x.rstrip("/") == y.rstrip("/") and x.startswith("/"):
        return True
    return os.path.realpath(x) == os.path.realpath(y)


def usable(wr: pygit2.Repository, path: Path) -> bool:
    """Whether the slot's repository (opened through its admin dir) is the worktree at
    ``path`` with no filter driver configured (a clean filter could make git see a file
    differently)."""
    try:
        if wr.workdir is None or not same_path(wr.workdir, path):
            return False
        return not any(e.name.lower().startswith("filter.") for e in wr.config)
    except handles.IN_PROCESS_ERRORS:
        return False


def _matches(wr: pygit2.Repository, admin: Path, path: Path, commit: pygit2.Commit,
             limit: int) -> bool:
    """The checks of ``clean_at`` past HEAD, on an opened slot."""
    return _proved(wr, admin, path, commit, limit) is not None


def _proved(wr: pygit2.Repository, admin: Path, path: Path, commit: pygit2.Commit,
            limit: int) -> _Parsed | None:
    """``_matches``, returning the index version it proved the worktree by (None: not)."""
    parsed = _parse_index(admin, limit)
    if parsed is None or parsed.flagged:
        return None
    try:
        index = wr.index
        index.read(False)  # what is on disk now, not what this object last read or wrote
        if len(index) != len(parsed.paths) or index.conflicts is not None:
            return None
        if len(index.diff_to_tree(commit.tree)) or len(index.diff_to_workdir()):
            return None
    except handles.IN_PROCESS_ERRORS:
        return None
    return parsed if holds_only(path, parsed.paths, parsed.dirs) else None


_LINK, _BLOB, _EXEC = 0o120000, 0o100644, 0o100755


def _file_is(full: str, mode: int, oid: pygit2.Oid) -> bool:
    """Whether the file at ``full`` is what git reads as the index entry ``mode``/``oid``,
    judged on its bytes as they are (no filter, no end-of-line conversion: a checkout that
    applied one is left for git to judge): a regular file with the entry's executable bit,
    or a symbolic link whose target is the blob."""
    st = os.lstat(full)
    if mode == _LINK:
        return stat.S_ISLNK(st.st_mode) and pygit2.hash(os.fsencode(os.readlink(full))) == oid
    if mode not in (_BLOB, _EXEC) or not stat.S_ISREG(st.st_mode):
        return False
    if bool(st.st_mode & stat.S_IXUSR) != (mode == _EXEC):
        return False
    return pygit2.hashfile(full) == oid


def _absent(full: str) -> bool:
    try:
        os.lstat(full)
    except (FileNotFoundError, NotADirectoryError):
        return True
    return False


def _settled(wr: pygit2.Repository, admin: Path, path: Path, want: pygit2.Commit,
             before: _Parsed, changed: AbstractSet[str], limit: int) -> bool:
    """After libgit2's checkout of only the paths ``changed`` into a worktree proved exactly
    at its HEAD (index version ``before``): whether it now is exactly at ``want``. The paths
    outside ``changed`` were proved before and the checkout did not touch them, so only the
    checkout's work is looked at: the new index plain, of exactly the old paths with the
    changed ones as ``want`` has them, equal to ``want``'s tree; each changed path that
    ``want`` has is its entry's bytes and mode (``_file_is``); each it has not is gone, and so
    is every directory that held only such paths; a directory the checkout made is a real
    one. Anything else (a filter or conversion the checkout applied, a directory left
    behind): False, and git resets the worktree."""
    after = _parse_index(admin, limit)
    if after is None or after.flagged or after.paths - changed != before.paths - changed:
        return False
    root = str(path)
    try:
        index = wr.index
        index.read(False)
        if len(index) != len(after.paths) or index.conflicts is not None \
                or len(index.diff_to_tree(want.tree)):
            return False
        for d in after.dirs - before.dirs:
            if not stat.S_ISDIR(os.lstat(os.path.join(root, d)).st_mode):
                return False
        for rel in changed:
            if rel in after.paths:
                entry = index[rel]
                if not _file_is(os.path.join(root, rel), entry.mode, entry.id):
                    return False
                continue
            if rel in after.dirs:
                continue  # a file that became a directory: made by the checkout, checked above
            if not _absent(os.path.join(root, rel)):
                return False
            i = rel.rfind("/")
            while i > 0 and rel[:i] not in after.dirs and rel[:i] not in after.paths:
                if not _absent(os.path.join(root, rel[:i])):
                    return False  # a directory the checkout emptied and left behind
                i = rel.rfind("/", 0, i)
    except handles.IN_PROCESS_ERRORS:
        return False
    return True


def _commit(wr: pygit2.Repository, oid: str) -> pygit2.Commit | None:
    try:
        obj = wr.get(oid)
    except (pygit2.GitError, KeyError, ValueError, TypeError):
        return None
    return obj if isinstance(obj, pygit2.Commit) else None


def clean_at(admin: Path, path: Path, commit: str, limit: int = SMALL_CHECKOUT) -> bool:
    """Whether the worktree at ``path`` (admin dir ``admin``) is exactly what ``git checkout
    -f --detach COMMIT`` + ``git clean -ffdx`` would leave: then neither has work to do."""
    if read_head(admin) != commit:
        return False
    try:
        with handles.opened(admin) as wr:
            want = _commit(wr, commit) if usable(wr, path) else None
            return want is not None and _matches(wr, admin, path, want, limit)
    except handles.IN_PROCESS_ERRORS:
        return False


def _attributes_possible(wr: pygit2.Repository, common: Path, changed: AbstractSet[str],
                         in_index: bool) -> bool:
    """Whether a checkout could meet attributes libgit2 may treat otherwise than git (e.g.
    ``working-tree-encoding``): a ``.gitattributes`` in the index (``in_index``) or the change,
    the repository's ``info/attributes``, or a configured or default global attributes file."""
    if in_index or _names_attributes(changed):
        return True
    if (common / "info" / "attributes").exists():
        return True
    try:
        if "core.attributesfile" in wr.config:
            return True
    except pygit2.GitError:
        return True
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.exists(os.path.join(xdg, "git", "attributes"))


def _index_from_files(wr: pygit2.Repository, head: pygit2.Commit) -> bool:
    """Take the worktree's files into its index as ``git add -A`` would (the stat cache
    re-hashes only what changed), written only when that is exactly ``head``'s tree: the
    files of the patch a snapshot just took, under an index still at its base."""
    try:
        index = wr.index
        index.read(False)
        if index.conflicts is not None:
            return False
        index.add_all()
        if index.write_tree() != head.tree_id:
            index.read(True)  # drop what add_all did in memory
            return False
        index.write()
    except handles.IN_PROCESS_ERRORS:
        return False
    return True


def reset_clean(admin: Path, path: Path, common: Path, commit: str,
                limit: int = SMALL_CHECKOUT) -> bool:
    """Put the worktree exactly at ``commit`` (what ``git checkout -f --detach`` + ``git clean
    -ffdx`` leave) in process, or return False having changed nothing git cannot repair (the
    caller then runs git). True when it already is there; else, when the worktree is exactly
    at its own detached HEAD (after its index takes its files, when they are exactly HEAD's
    tree), libgit2's checkout to ``commit`` and HEAD detached there, checked afterwards as
    ``clean_at`` checks."""
    head = read_head(admin)
    if head is None or len(head) != len(commit):
        return False
    try:
        with handles.opened(admin) as wr:
            return usable(wr, path) and _reset_clean(wr, admin, path, common, head, commit,
                                                      limit)
    except handles.IN_PROCESS_ERRORS:
        return False


def _reset_clean(wr: pygit2.Repository, admin: Path, path: Path, common: Path, head: str,
                 commit: str, limit: int) -> bool:
    """``reset_clean`` on the opened slot, its HEAD at ``head``."""
    want = _commit(wr, commit)
    if want is None:
        return False
    if head == commit:
        return _matches(wr, admin, path, want, limit)
    current = _commit(wr, head)
    if current is None:
        return False
    before = _proved(wr, admin, path, current, limit)
    if before is None and index_paths(admin, limit) is not None \
            and _index_from_files(wr, current):
        before = _proved(wr, admin, path, current, limit)
    if before is None:
        return False
    try:
        delta = wr.index.diff_to_tree(want.tree)
        changed = {p for d in delta.deltas for p in (d.old_file.path, d.new_file.path)}
        if _attributes_possible(wr, common, changed, before.attributes):
            return False
        if changed:
            # Only the paths that differ: the others are the target's already (checked above).
            strategy = (pygit2.enums.CheckoutStrategy.FORCE
                        | pygit2.enums.CheckoutStrategy.DISABLE_PATHSPEC_MATCH)
            wr.checkout_tree(want, strategy=strategy, paths=sorted(changed))
        if not write_head(admin, commit):
            wr.set_head(want.id)
    except handles.IN_PROCESS_ERRORS:
        return False
    return read_head(admin) == commit and _settled(wr, admin, path, want, before, changed,
                                                    limit)
