"""Writing and reading git objects in process (pygit2): blobs, nested trees, commits.

Object ids cross this boundary as 40-hex strings; every function also accepts a
``pygit2.Oid``. ``build_tree`` rewrites only the trees on the paths that change (one
``TreeBuilder`` per touched directory), so its cost is O(changed paths x depth), not O(files):
the ledger's tree accumulates the evidence of every workstream of a run.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pygit2

from uet_git.gitrepo import filters
from uet_git.gitrepo.repo import GitError, Repo

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
FILEMODE_BLOB = pygit2.enums.FileMode.BLOB
FILEMODE_EXEC = pygit2.enums.FileMode.BLOB_EXECUTABLE
FILEMODE_LINK = pygit2.enums.FileMode.LINK
FILEMODE_TREE = pygit2.enums.FileMode.TREE
DEFAULT_NAME = "uet"
DEFAULT_EMAIL = "uet@localhost"

OidLike = str | pygit2.Oid


@dataclass(frozen=True)
class Person:
    """An author or committer: name, email, epoch seconds and UTC offset in minutes (the
    public form of a signature; ``odb`` re-exports it)."""

    name: str
    email: str
    time: int
    offset: int


@dataclass(frozen=True)
class Entry:
    """An existing blob placed in a tree with a mode (executable, symlink)."""

    oid: str
    mode: int = FILEMODE_BLOB


def to_oid(value: OidLike) -> pygit2.Oid:
    if isinstance(value, pygit2.Oid):
        return value
    try:
        return pygit2.Oid(hex=str(value))
    except (ValueError, TypeError) as exc:
        raise GitError(f"{value!r} is not an object id") from exc


def write_blob(repo: Repo, data: bytes) -> str:
    return str(repo._pg.create_blob(bytes(data)))


def _object(repo: Repo, oid: OidLike) -> pygit2.Object:
    try:
        return repo._pg[to_oid(oid)]
    except (KeyError, ValueError) as exc:
        raise GitError(f"object {oid} does not exist") from exc


def peel_tree(repo: Repo, oid: OidLike) -> pygit2.Tree:
    """The tree of a commit (or tag), or the tree itself."""
    obj = _object(repo, oid)
    try:
        tree = obj.peel(pygit2.Tree)
    except (pygit2.InvalidSpecError, ValueError) as exc:
        raise GitError(f"object {oid} is not a commit or a tree") from exc
    return tree


def commit_tree(repo: Repo, oid: OidLike) -> str:
    """The tree id of commit ``oid`` (a tree id is returned as is)."""
    return str(peel_tree(repo, oid).id)


def empty_tree(repo: Repo) -> str:
    """Write (if needed) and return the empty tree."""
    return str(repo._pg.TreeBuilder().write())


def _split(path: str) -> list[str]:
    parts = path.split("/")
    for p in parts:
        if p in ("", ".", "..") or "\0" in p or p.lower() == ".git":
            raise GitError(f"bad path for a tree entry: {path!r}")
    return parts


_Change = bytes | Entry | None


def build_tree(
    repo: Repo, base_tree: OidLike | None, files: Mapping[str, _Change]
) -> str:
    """``base_tree`` (a tree or commit id, or None = empty) with ``files`` applied: bytes write
    a regular file, an ``Entry`` places an existing blob with its mode, None deletes (a
    directory emptied this way disappears). Paths are ``/``-separated and may be nested."""
    nested: dict[str, object] = {}
    for path, value in files.items():
        parts = _split(path)
        node = nested
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise GitError(f"build_tree: {path!r} is below a path that is also a file")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise GitError(f"build_tree: {path!r} is both a file and a directory")
        node[parts[-1]] = value
    pg = repo._pg
    base = peel_tree(repo, base_tree) if base_tree is not None else None
    oid = _write_level(pg, base, nested)
    return str(oid) if oid is not None else empty_tree(repo)


def _write_level(
    pg: pygit2.Repository, tree: pygit2.Tree | None, changes: dict[str, object]
) -> pygit2.Oid | None:
    tb = pg.TreeBuilder(tree) if tree is not None else pg.TreeBuilder()
    # Names that are not UTF-8 (a tool's file name, surrogate-escaped): TreeBuilder.insert
    # cannot take them, so they are added to the written tree as raw bytes.
    raw: dict[bytes, tuple[int, pygit2.Oid]] = {}

    def insert(name: str, oid: pygit2.Oid, mode: int) -> None:
        if _is_utf8(name):
            tb.insert(name, oid, mode)
        else:
            if tree is not None and name in tree:
                tb.remove(name)
            raw[os.fsencode(name)] = (mode, oid)

    for name, change in changes.items():
        existing = tree[name] if tree is not None and name in tree else None
        if isinstance(change, dict):
            sub = existing if isinstance(existing, pygit2.Tree) else None
            oid = _write_level(pg, sub, change)
            if oid is None:
                if existing is not None:
                    tb.remove(name)
            else:
                insert(name, oid, FILEMODE_TREE)
        elif change is None:
            if existing is not None:
                tb.remove(name)
        elif isinstance(change, Entry):
            insert(name, to_oid(change.oid), change.mode)
        else:
            insert(name, pg.create_blob(bytes(change)), FILEMODE_BLOB)  # type: ignore[arg-type]
    if raw:
        return _add_raw_entries(pg, tb.write() if len(tb) else None, raw)
    if len(tb) == 0:
        return None
    return tb.write()


def _is_utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _add_raw_entries(pg: pygit2.Repository, tree_id: pygit2.Oid | None,
                     extra: dict[bytes, tuple[int, pygit2.Oid]]) -> pygit2.Oid:
    """``tree_id`` (None = empty) plus ``extra`` entries, written as a raw tree object in
    git's entry order (names as bytes, a tree's name compared as if it ended in "/")."""
    entries: dict[bytes, tuple[int, pygit2.Oid]] = {}
    if tree_id is not None:
        for obj in pg[tree_id]:  # type: ignore[attr-defined]
            entries[obj.raw_name] = (int(obj.filemode), obj.id)
    entries.update(extra)

    def order(name: bytes) -> bytes:
        return name + b"/" if entries[name][0] == FILEMODE_TREE else name

    data = b"".join(b"%o %s\0" % (entries[n][0], n) + entries[n][1].raw
                    for n in sorted(entries, key=order))
    return pg.write(pygit2.enums.ObjectType.TREE, data)


def read_blob(repo: Repo, commit_or_tree: OidLike, path: str) -> bytes | None:
    """The content of ``path`` in a commit's or tree's tree, or None if absent or not a file."""
    tree = peel_tree(repo, commit_or_tree)
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj.data if isinstance(obj, pygit2.Blob) else None


# ---------------------------------------------------------------- identity

_RAW_DATE = re.compile(r"^@?(\d+)(?:\s+([+-])(\d{2}):?(\d{2}))?$")


def _parse_date(value: str, var: str) -> tuple[int, int]:
    """(epoch seconds, offset minutes) from a GIT_*_DATE value (raw, ISO 8601 or RFC 2822)."""
    v = value.strip()
    m = _RAW_DATE.match(v)
    if m:
        offset = 0
        if m[2]:
            offset = (int(m[3]) * 60 + int(m[4])) * (-1 if m[2] == "-" else 1)
        return int(m[1]), offset
    dt: datetime | None = None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        try:
            dt = email.utils.parsedate_to_datetime(v)
        except (TypeError, ValueError):
            dt = None
    if dt is None:
        raise GitError(f"{var}={value!r} is not a date git understands")
    if dt.tzinfo is None:
        dt = dt.astimezone()
    off = dt.utcoffset()
    return int(dt.timestamp()), int(off.total_seconds() // 60) if off else 0


# Identity read from git config, per (common dir, worktree), for the whole process: keyed on
# the config files' stat data and the environment that selects them (``filters.stat_key``) and
# read again when any changes; never kept when the config includes other files (an included
# file can change without any of those). Only the git CLI gives git's own answer here: libgit2
# ignores GIT_CONFIG_* and a HOME changed after start.
_IDENTITY_QUERY = r"^(user|author|committer)\.(name|email)$|^include(if)?\."
_IDENTITY: dict[tuple[str, str], tuple[tuple[object, ...], dict[str, str]]] = {}


def _config_key(repo: Repo) -> tuple[object, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("GIT_CONFIG")))
    return (filters.stat_key(repo.common_dir, repo.workdir, ()), env)


def _identity_config(repo: Repo) -> dict[str, str]:
    """``user.*``/``author.*``/``committer.*`` name and email as git itself reads them, from
    one ``git config`` process per change of the config (see ``_IDENTITY``)."""
    where = (str(repo.common_dir), str(repo.workdir))
    key = _config_key(repo)
    cached = _IDENTITY.get(where)
    if cached is not None and cached[0] == key:
        return cached[1]
    proc = repo.git("config", "--get-regexp", _IDENTITY_QUERY, check=False)
    values: dict[str, str] = {}
    includes = False
    for line in proc.stdout.decode(errors="replace").splitlines():
        k, _, v = line.partition(" ")
        k = k.lower()
        if k.startswith(("include.", "includeif.")):
            includes = True
        elif v.strip():
            values[k] = v.strip()
    if includes:
        _IDENTITY.pop(where, None)
    else:
        _IDENTITY[where] = (key, values)  # one assignment: safe for other threads
    return values


def signature(repo: Repo, role: str = "author") -> pygit2.Signature:
    """The identity git itself would use for ``role`` ('author' or 'committer'):
    GIT_<ROLE>_NAME/EMAIL/DATE, then ``<role>.name``/``user.name`` from git config, else
    ``uet <uet@localhost>``. The config is not read when the environment names both."""
    up = role.upper()
    name = os.environ.get(f"GIT_{up}_NAME")
    mail = os.environ.get(f"GIT_{up}_EMAIL")
    if not (name and mail):
        cfg = _identity_config(repo)
        name = name or cfg.get(f"{role}.name") or cfg.get("user.name") or DEFAULT_NAME
        mail = mail or cfg.get(f"{role}.email") or cfg.get("user.email") or DEFAULT_EMAIL
    date = os.environ.get(f"GIT_{up}_DATE")
    if date:
        when, offset = _parse_date(date, f"GIT_{up}_DATE")
    else:
        when = int(time.time())
        offset = (time.localtime(when).tm_gmtoff or 0) // 60
    return pygit2.Signature(name, mail, when, offset)


def identity(repo: Repo, role: str = "author") -> Person:
    """``signature`` as a ``Person``: who git would record as ``role`` now."""
    sig = signature(repo, role)
    return Person(sig.name, sig.email, int(sig.time), int(sig.offset))


def person_now(name: str, email: str) -> Person:
    """``name <email>`` at the current time and local UTC offset."""
    when = int(time.time())
    return Person(name, email, when, (time.localtime(when).tm_gmtoff or 0) // 60)


def _sig(who: Person | pygit2.Signature | None, repo: Repo, role: str) -> pygit2.Signature:
    if who is None:
        return signature(repo, role)
    if isinstance(who, Person):
        return pygit2.Signature(who.name, who.email, who.time, who.offset)
    return who


def make_commit(
    repo: Repo,
    tree: OidLike,
    parents: Sequence[OidLike],
    message: str,
    *,
    author: Person | pygit2.Signature | None = None,
    committer: Person | pygit2.Signature | None = None,
) -> str:
    """Write a commit object (no ref moves) and return its id. ``author``/``committer``
    default to the identity git itself would use (``signature``)."""
    if not message.endswith("\n"):
        message += "\n"
    oid = repo._pg.create_commit(
        None, _sig(author, repo, "author"), _sig(committer, repo, "committer"), message,
        to_oid(tree), [to_oid(p) for p in parents]
    )
    return str(oid)
