"""The tree-level merge must give exactly libgit2's full merge, only cheaper.

Random edits on both sides of a small tree (modify, add, delete, rename, exec bit, symlink,
file/directory swaps), merged both ways: whenever the fast path answers, its tree equals the
full merge's; the scenarios include both overlapping and disjoint changes so both paths run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pygit2
import pytest

from tests.conftest import make_repo
from uet_git.gitrepo import Repo
from uet_git.gitrepo.merge import _disjoint_merge, _tree, merge_trees
from uet_git.gitrepo.objects import Entry, build_tree, write_blob

FILES = ["a.txt", "b.txt", "d/x.txt", "d/y.txt", "d/e/z.txt", "f/g.txt", "top"]


def _random_side(repo: Repo, base: str, rng: random.Random) -> str:
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
        return build_tree(repo, base, changes)  # type: ignore[arg-type]
    except Exception:
        return build_tree(repo, base, {"a.txt": f"{rng.random()}\n".encode()})


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    make_repo(tmp_path / "r", {f: f"{f}\n" for f in FILES})
    return Repo.open(tmp_path / "r")


def test_fast_path_equals_full_merge_on_random_edits(repo: Repo) -> None:
    rng = random.Random(1234)
    base = str(repo._pg.head.peel().tree.id)
    fast_answers = fallbacks = 0
    for _ in range(300):
        ours = _random_side(repo, base, rng)
        theirs = _random_side(repo, base, rng)
        for a, b in ((ours, theirs), (theirs, ours)):
            fast = _disjoint_merge(repo, _tree(repo, base), _tree(repo, a), _tree(repo, b))
            index = repo._pg.merge_trees(_tree(repo, base), _tree(repo, a), _tree(repo, b))
            full = None if index.conflicts is not None and any(True for _ in index.conflicts) \
                else str(index.write_tree(repo._pg))
            if fast is None:
                fallbacks += 1
                continue
            fast_answers += 1
            assert fast == full, (a, b)
    # Both paths were exercised, or the comparison proves little.
    assert fast_answers > 100 and fallbacks > 50, (fast_answers, fallbacks)


def test_merge_trees_still_reports_conflicts(repo: Repo) -> None:
    base = str(repo._pg.head.peel().tree.id)
    ours = build_tree(repo, base, {"a.txt": b"ours\n"})
    theirs = build_tree(repo, base, {"a.txt": b"theirs\n", "b.txt": b"theirs too\n"})
    result = merge_trees(repo, base, ours, theirs)
    assert result.tree is None and result.conflicts == ["a.txt"]
    clean = merge_trees(repo, base, ours, build_tree(repo, base, {"b.txt": b"b2\n"}))
    assert clean.tree is not None
    assert repo._pg[clean.tree]["a.txt"].data == b"ours\n"
    assert repo._pg[clean.tree]["b.txt"].data == b"b2\n"
