"""The paths a landing ``old -> new`` changes, and the region a local change must stay out of.

``_tree_changes`` walks the two trees skipping equal subtrees, so a landing costs its changes,
not the size of the tree. A local change is in the way when it is at a changed path, at a
directory above one, or below one (``_in_region``).
"""

from __future__ import annotations

from collections.abc import Mapping

from uet_git.gitrepo.merge import differing_entries
from uet_git.gitrepo.objects import peel_tree
from uet_git.gitrepo.repo import Repo

_GITLINK = 0o160000
_TREE = 0o040000
_LINK = 0o120000

_Ent = tuple[str, int]  # (oid, mode)


def _tree_changes(repo: Repo, a: str, b: str) -> dict[str, tuple[_Ent | None, _Ent | None]]:
    """``{path: (entry in a, entry in b)}`` for every non-tree path that differs, equal
    subtrees skipped (O(changes x depth)). Paths are file-system strings (surrogateescape)."""
    return differing_entries(peel_tree(repo, a), peel_tree(repo, b))


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
