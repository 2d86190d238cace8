"""Typed, read-only access to the object database: commits, trees and blobs as plain data.

Callers outside ``gitrepo`` never hold pygit2 objects: they get ``CommitInfo``/``TreeEntry``
values (safe to pass between threads) and a ``MissingObject`` error naming what they asked
for when an object is absent or of the wrong type. Everything runs in process (pygit2).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pygit2

from uet_git.errors import EXIT_WORK_FAILED
from uet_git.gitrepo.gitcmd import GitError
from uet_git.gitrepo.objects import FILEMODE_TREE, Person, read_blob
from uet_git.gitrepo.repo import Repo

__all__ = [
    "CommitInfo", "MissingObject", "Person", "TreeEntry", "added_objects", "entry_ids",
    "get_commit", "has_object", "list_tree", "missing_in_tree", "not_loose", "read_blob",
    "read_raw", "resolve", "tree_of", "walk_commits", "walk_tree",
]

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_RAW_KINDS = {1: "commit", 2: "tree", 3: "blob", 4: "tag"}
_KINDS = {pygit2.enums.ObjectType.BLOB: "blob", pygit2.enums.ObjectType.TREE: "tree",
          pygit2.enums.ObjectType.COMMIT: "commit"}


class MissingObject(GitError):
    """An object (or the name of one) is absent from the repository, or not of the type the
    caller needs."""

    exit_code = EXIT_WORK_FAILED

    def __init__(self, what: str, oid: str) -> None:
        super().__init__(f"{what}: object {oid[:12]} is missing from the repository")
        self.what = what
        self.oid = oid


@dataclass(frozen=True)
class CommitInfo:
    oid: str
    tree: str
    parents: tuple[str, ...]
    message: str
    author: Person
    committer: Person

    @property
    def parent(self) -> str | None:
        """The first parent, or None for a root commit."""
        return self.parents[0] if self.parents else None

    @property
    def commit_time(self) -> int:
        return self.committer.time

    @property
    def subject(self) -> str:
        return self.message.strip().partition("\n")[0].strip()


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a tree: ``name`` in its directory, ``path`` from the root, its mode and
    ``kind`` ("blob" for files and symlinks, "tree", or "commit" for a submodule)."""

    name: str
    path: str
    oid: str
    mode: int
    kind: str


def _person(sig: pygit2.Signature) -> Person:
    return Person(sig.name, sig.email, int(sig.time), int(sig.offset))


def _commit_info(c: pygit2.Commit) -> CommitInfo:
    return CommitInfo(
        oid=str(c.id), tree=str(c.tree_id), parents=tuple(str(p) for p in c.parent_ids),
        message=c.message, author=_person(c.author), committer=_person(c.committer),
    )


def _lookup(repo: Repo, rev: str, what: str) -> pygit2.Object:
    """The object ``rev`` names (a full or abbreviated id, a ref, any revision), unpeeled."""
    pg = repo._pg
    try:
        if _HEX40.match(rev):
            obj = pg.get(rev)
            if obj is not None:
                return obj
            raise MissingObject(what, rev)
        return pg.revparse_single(rev)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
        raise MissingObject(what, rev) from exc


def _peel(repo: Repo, rev: str, kind: type[pygit2.Object], what: str) -> pygit2.Object:
    obj = _lookup(repo, rev, what)
    try:
        return obj.peel(kind)
    except (pygit2.InvalidSpecError, pygit2.GitError, ValueError, KeyError) as exc:
        raise MissingObject(what, str(obj.id)) from exc


def resolve(repo: Repo, rev: str, *, what: str = "object") -> str:
    """The full id of the object ``rev`` names (any type, not peeled); MissingObject if none."""
    return str(_lookup(repo, rev, what).id)


def read_raw(repo: Repo, oid: str) -> tuple[str, bytes] | None:
    """``(kind, content)`` of an object exactly as stored ("blob", "tree", "commit", "tag"),
    or None when it is absent. Unparsed: a hostile tree libgit2 refuses to load (bad modes,
    unsorted or duplicate names) can still be looked at."""
    if not _HEX40.match(oid):
        return None
    try:
        kind, data = repo._pg.odb.read(oid)
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return _RAW_KINDS.get(int(kind), str(kind)), bytes(data)


def get_commit(repo: Repo, rev_or_oid: str, *, what: str = "commit") -> CommitInfo:
    """The commit ``rev_or_oid`` names (peeling a tag). ``what`` names it in the error."""
    return _commit_info(_peel(repo, rev_or_oid, pygit2.Commit, what))  # type: ignore[arg-type]


def has_object(repo: Repo, oid: str) -> bool:
    """Whether an object with this full id is in the object database (any type)."""
    try:
        return pygit2.Oid(hex=oid) in repo._pg
    except (ValueError, TypeError):
        return False


def not_loose(repo: Repo, oids: Iterable[str]) -> list[str]:
    """The ids among ``oids`` that have no loose object file on disk now, looked at with
    ``stat`` (libgit2 answers "exists" from its object cache for what this process wrote, even
    after another process pruned it). An id listed may still be in a pack: ask ``has_object``
    through a fresh handle for those. Every id is listed when ``GIT_OBJECT_DIRECTORY`` sends
    git elsewhere."""
    ids = list(oids)
    if os.environ.get("GIT_OBJECT_DIRECTORY"):
        return ids
    objects = os.path.join(repo.common_dir, "objects")
    absent: list[str] = []
    for oid in ids:
        try:
            os.stat(f"{objects}/{oid[:2]}/{oid[2:]}")
        except (OSError, ValueError):
            absent.append(oid)
    return absent


def entry_ids(repo: Repo, commit_or_tree: str, paths: Iterable[str]) -> dict[str, str]:
    """``{path: id}`` of the entries at ``paths`` (files or directories, ``/``-separated) in a
    commit's or tree's tree; a path that is absent is left out."""
    tree = _tree(repo, commit_or_tree, "tree")
    out: dict[str, str] = {}
    for path in paths:
        try:
            out[path] = str(tree[path].id)
        except KeyError:
            continue
        except pygit2.GitError as exc:  # a tree on the path is not in the database
            raise MissingObject(f"{path} in tree", str(tree.id)) from exc
    return out


def added_objects(repo: Repo, commit_or_tree: str, base: str | None) -> list[str]:
    """What writing ``commit_or_tree`` added to ``base`` (a commit or tree; None: nothing):
    the object itself, its tree, and every subtree and blob that ``base``'s tree does not hold
    at the same path (submodule commits excepted), in proportion to the change, not to the
    tree. MissingObject when one of them cannot be read."""
    pg = repo._pg
    obj = _lookup(repo, commit_or_tree, "object")
    tree = _tree(repo, str(obj.id), "tree")
    old = _tree(repo, base, "tree") if base else None
    added = [str(obj.id)] if obj.id == tree.id else [str(obj.id), str(tree.id)]
    if old is not None and old.id == tree.id:
        return [str(obj.id)]
    stack: list[tuple[pygit2.Tree, pygit2.Tree | None]] = [(tree, old)]
    try:
        while stack:
            new, prev = stack.pop()
            before = {e.raw_name: e for e in prev} if prev is not None else {}
            for e in new:
                was = before.get(e.raw_name)
                if was is not None and was.id == e.id:
                    continue
                if e.type == pygit2.enums.ObjectType.TREE:
                    added.append(str(e.id))
                    sub = pg.get(e.id)
                    if not isinstance(sub, pygit2.Tree):
                        raise MissingObject("tree", str(e.id))
                    stack.append((sub, was if isinstance(was, pygit2.Tree) else None))
                elif e.type == pygit2.enums.ObjectType.BLOB:
                    added.append(str(e.id))
    except (KeyError, pygit2.GitError) as exc:  # a tree the walk reads is not there
        raise MissingObject("tree", str(tree.id)) from exc
    return added


def _tree(repo: Repo, commit_or_tree: str, what: str) -> pygit2.Tree:
    return _peel(repo, commit_or_tree, pygit2.Tree, what)  # type: ignore[return-value]


def tree_of(repo: Repo, commit_or_tree: str, *, what: str = "tree") -> str:
    """The tree id of a commit (or tag), or the tree id itself."""
    return str(_tree(repo, commit_or_tree, what).id)


def _entry(obj: pygit2.Object, path: str) -> TreeEntry:
    return TreeEntry(name=obj.name or "", path=path, oid=str(obj.id), mode=int(obj.filemode),
                     kind=_KINDS.get(obj.type, "blob"))


def list_tree(repo: Repo, commit_or_tree: str, path: str = "") -> list[TreeEntry]:
    """The entries of directory ``path`` ("" = the root) in a commit's or tree's tree, in
    git's order; empty when the path is absent or not a directory."""
    tree = _tree(repo, commit_or_tree, "tree")
    path = path.strip("/")
    if path:
        try:
            sub = tree[path]
        except KeyError:
            return []
        if not isinstance(sub, pygit2.Tree):
            return []
        tree = sub
    prefix = f"{path}/" if path else ""
    return [_entry(obj, prefix + (obj.name or "")) for obj in tree]


def walk_tree(repo: Repo, commit_or_tree: str, prefix: str = "") -> Iterator[TreeEntry]:
    """Every non-tree entry (files, symlinks, submodules) below directory ``prefix`` ("" = the
    whole tree), depth first in git's order, with paths from the root."""
    stack = [e for e in reversed(list_tree(repo, commit_or_tree, prefix))]
    pg = repo._pg
    while stack:
        e = stack.pop()
        if e.mode != FILEMODE_TREE:
            yield e
            continue
        sub = pg.get(e.oid)
        if not isinstance(sub, pygit2.Tree):
            raise MissingObject(f"tree {e.path}", e.oid)
        stack.extend(_entry(obj, f"{e.path}/{obj.name}") for obj in reversed(list(sub)))


def missing_in_tree(repo: Repo, commit_or_tree: str) -> list[str]:
    """The paths below a commit's or tree's tree whose objects (blobs, subtrees) are absent
    from the object database (submodule commits excepted: they live elsewhere), sorted;
    ``["(tree)"]`` when the root tree itself is missing."""
    try:
        root = _tree(repo, commit_or_tree, "tree")
    except MissingObject:
        return ["(tree)"]
    pg = repo._pg
    missing: list[str] = []
    stack: list[tuple[str, pygit2.Tree]] = [("", root)]
    while stack:
        prefix, tree = stack.pop()
        for obj in tree:
            path = f"{prefix}{obj.name}"
            if obj.type == pygit2.enums.ObjectType.COMMIT:
                continue
            sub = pg.get(obj.id)
            if sub is None:
                missing.append(path)
            elif isinstance(sub, pygit2.Tree):
                stack.append((f"{path}/", sub))
    return sorted(missing)


def walk_commits(repo: Repo, tip: str, *, first_parent: bool = False,
                 exclude: Sequence[str] = ()) -> Iterator[CommitInfo]:
    """``tip`` and its ancestors, newest first in topological order (a commit before its
    parents); with ``first_parent``, only along first parents; without the commits reachable
    from any of ``exclude`` (``git rev-list TIP ^EXCLUDE...``)."""
    start = _peel(repo, tip, pygit2.Commit, "commit")
    walker = repo._pg.walk(start.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    if first_parent:
        walker.simplify_first_parent()
    for rev in exclude:
        walker.hide(_peel(repo, rev, pygit2.Commit, "commit").id)
    try:
        for c in walker:
            yield _commit_info(c)
    except (KeyError, pygit2.GitError) as exc:
        raise MissingObject(f"history of {tip}", str(start.id)) from exc
