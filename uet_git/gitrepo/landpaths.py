"""The paths a landing ``old -> new`` changes, and the region a local change must stay out of.

``_tree_changes`` walks the two trees skipping equal subtrees, so a landing costs its changes,
not the size of the tree. A local change is in the way when it is at a changed path, at a
directory above one, or below one (``_in_region``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import pygit2

from uet_git.gitrepo.objects import peel_tree
from uet_git.gitrepo.repo import Repo

_GITLINK = 0o160000
_TREE = 0o040000
_LINK = 0o120000

_Ent = tuple[str, int]  # (oid, mode)


def _tree_changes(repo: Repo, a: str, b: str) -> dict[str, tuple[_Ent | None, _Ent | None]]:
    """``{path: (entry in a, entry in b)}`` for every non-tree path that differs, equal
    subtrees skipped (O(changes x depth)). Paths are file-system strings (surrogateescape)."""
    out: dict[str, tuple[_Ent | None, _Ent | None]] = {}
    _walk(peel_tree(repo, a), peel_tree(repo, b), "", out)
    return out


def _walk(ta: pygit2.Tree | None, tb: pygit2.Tree | None, prefix: str,
          out: dict[str, tuple[_Ent | None, _Ent | None]]) -> None:
    ea = {os.fsdecode(e.raw_name): e for e in ta} if ta is not None else {}
    eb = {os.fsdecode(e.raw_name): e for e in tb} if tb is not None else {}
    for name in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(name), eb.get(name)
        if x is not None and y is not None and x.id == y.id and x.filemode == y.filemode:
            continue
        path = prefix + name
        xt = x if x is not None and x.filemode == _TREE else None
        yt = y if y is not None and y.filemode == _TREE else None
        if xt is not None or yt is not None:
            _walk(xt, yt, path + "/", out)  # type: ignore[arg-type]
        xe = (str(x.id), int(x.filemode)) if x is not None and xt is None else None
        ye = (str(y.id), int(y.filemode)) if y is not None and yt is None else None
        if xe is not None or ye is not None:
            out[path] = (xe, ye)


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _in_region(path: str, changes: Mapping[str, object], landed: set[str]) -> bool:
    """Whether a local change at ``path`` is one the landing would overwrite: a changed path,
    a directory above one, or a path below one."""
    return path in landed or any(d in changes for d in _prefixes(path))


def _landed_paths(changes: Mapping[str, object]) -> set[str]:
    landed = set(changes)
    for p in changes:
        landed.update(_prefixes(p))
    return landed
