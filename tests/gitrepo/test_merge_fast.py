"""The tree-level merge must give exactly libgit2's full merge, only cheaper.

Random edits on both sides of a small tree (modify, add, delete, rename, exec bit, symlink,
file/directory swaps), merged both ways with ``merge_trees``, compared with libgit2's full
merge (pygit2's ``merge_trees``, the oracle): the scenarios include both changes that overlap
(the full merge decides) and disjoint ones (the tree-level fast path answers).
"""

from __future__ import annotations

import random
from pathlib import Path

import pygit2
import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import Repo
from uet_git.gitrepo.merge import merge_trees
from uet_git.gitrepo.objects import Entry, build_tree, read_blob, write_blob

FILES = ["a.txt", "b.txt", "d/x.txt", "d/y.txt", "d/e/z.txt", "f/g.txt", "top"]


def _random_side(repo: Repo, base: str, rng: random.Random) -> tuple[str, set[str]]:
    """A tree of random changes to ``base`` and the paths they touch."""
    changes: dict[str, object] = {}
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([*FILES, "new.txt", "d/new.txt", "d/e", "f", "top/inner"])
        kind = rng.choice(["modify", "delete", "exec", "link", "modify"])
        if kind == "delete":
            changes[path] = None
        elif kind == "exec":
            exe = pygit2.enums.FileMode.BLOB_EXECUTABLE
            changes[path] = Entry(write_blob(repo, b"#!/bin/sh\n"), exe)
        elif kind == "link":
            changes[path] = Entry(write_blob(repo, b"a.txt"), pygit2.enums.FileMode.LINK)
        else:
            changes[path] = f"{path} {rng.random()}\n".encode()
    try:
        return build_tree(repo, base, changes), set(changes)  # type: ignore[arg-type]
    except Exception:
        return build_tree(repo, base, {"a.txt": f"{rng.random()}\n".encode()}), {"a.txt"}


def _overlap(a: set[str], b: set[str]) -> bool:
    """Whether two sides touch a common path, or one a directory of the other's path."""
    return any(x == y or y.startswith(x + "/") or x.startswith(y + "/") for x in a for y in b)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    make_repo(tmp_path / "r", {f: f"{f}\n" for f in FILES})
    return Repo.open(tmp_path / "r")


def test_fast_path_equals_full_merge_on_random_edits(repo: Repo) -> None:
    rng = random.Random(1234)
    oracle = pygit2.Repository(str(repo.workdir))
    base = git(repo.workdir, "rev-parse", "HEAD^{tree}")
    disjoint = overlapping = 0
    for _ in range(300):
        ours, touched_ours = _random_side(repo, base, rng)
        theirs, touched_theirs = _random_side(repo, base, rng)
        for a, b in ((ours, theirs), (theirs, ours)):
            index = oracle.merge_trees(base, a, b)
            full = None if index.conflicts is not None and any(True for _ in index.conflicts) \
                else str(index.write_tree(oracle))
            assert merge_trees(repo, base, a, b).tree == full, (a, b)
            if _overlap(touched_ours, touched_theirs):
                overlapping += 1
            else:
                disjoint += 1
    # Both kinds of scenario were exercised, or the comparison proves little.
    assert disjoint > 100 and overlapping > 50, (disjoint, overlapping)


def test_merge_trees_still_reports_conflicts(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD^{tree}")
    ours = build_tree(repo, base, {"a.txt": b"ours\n"})
    theirs = build_tree(repo, base, {"a.txt": b"theirs\n", "b.txt": b"theirs too\n"})
    result = merge_trees(repo, base, ours, theirs)
    assert result.tree is None and result.conflicts == ["a.txt"]
    clean = merge_trees(repo, base, ours, build_tree(repo, base, {"b.txt": b"b2\n"}))
    assert clean.tree is not None
    assert read_blob(repo, clean.tree, "a.txt") == b"ours\n"
    assert read_blob(repo, clean.tree, "b.txt") == b"b2\n"
