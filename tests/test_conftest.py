"""The shared fixtures' shortcuts give git's answer: a repository make_repo copies from the one
it built before is what ``shutil.copytree`` and ``git update-index --refresh`` made of it."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, restat_index

SHAPES = {
    "one file": {"README.md": "hello\n"},
    "nested, empty and odd names": {"a/b/c.txt": "c\n", "empty": "", "sp ace/ü.txt": "u\n",
                                    "z.sh": "#!/bin/sh\n"},
}


def _entries(top: Path) -> dict[str, tuple[int, int, bytes | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            rel = str(p.relative_to(top))
            if rel in (".git", ".git/index"):  # rewritten by the refresh in both
                continue
            st = p.lstat()
            data = p.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[rel] = (st.st_mode, st.st_mtime_ns, data)
    return out


@pytest.mark.parametrize("files", SHAPES.values(), ids=SHAPES.keys())
def test_a_copy_is_what_copytree_and_a_refresh_make(tmp_path: Path, files) -> None:
    first = make_repo(tmp_path / "first", files)
    reference = tmp_path / "reference"
    shutil.copytree(first, reference, symlinks=True)
    copy = make_repo(tmp_path / "copy", files)
    assert _entries(copy) == _entries(reference)
    assert git(copy, "rev-parse", "HEAD") == git(first, "rev-parse", "HEAD")
    # The index is git's: what git's own refresh writes for the same files, and one that
    # `git status` has nothing to refresh in (it would rewrite it).
    mine = (copy / ".git/index").read_bytes()
    git(copy, "update-index", "-q", "--really-refresh")
    assert (copy / ".git/index").read_bytes() == mine
    assert git(copy, "status", "--porcelain") == ""
    assert (copy / ".git/index").read_bytes() == mine
    assert git(copy, "diff-files", "--name-only") == ""
    git(copy, "fsck", "--strict")


def test_restat_writes_the_bytes_gits_refresh_writes(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", SHAPES["nested, empty and odd names"])
    template = tmp_path / "t"
    shutil.copytree(path, template, symlinks=True)  # new inodes and ctimes: a stale index
    stale = (template / ".git/index").read_bytes()
    git(template, "update-index", "-q", "--refresh")
    gits = (template / ".git/index").read_bytes()
    assert gits != stale
    (template / ".git/index").write_bytes(stale)
    assert restat_index(template)
    assert (template / ".git/index").read_bytes() == gits


def test_restat_leaves_what_it_does_not_know_to_git(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    index = (path / ".git/index").read_bytes()
    (path / "a.txt").write_text("b\n")  # same size, another mtime: git must read it
    os.utime(path / "a.txt", ns=(0, 10**9))
    assert not restat_index(path)
    assert (path / ".git/index").read_bytes() == index
    git(path, "update-index", "--index-version", "4")
    assert not restat_index(path)
