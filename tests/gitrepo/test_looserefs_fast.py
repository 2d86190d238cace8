"""The answers kept between in-process ref reads (``looserefs.packed_index``,
``Repo.files_refs``) follow every change to the files they were read from, checked against
the git CLI: ``packed-refs`` replaced by git or rewritten in place with the same size, ``HEAD``
rewritten in place so that git no longer takes the directory for a repository, a ``reftable``
directory appearing; and nothing is kept from a file changed too recently to tell a later
change apart (``stat_key``)."""

from __future__ import annotations

import os
import subprocess as sp
import time
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import looserefs
from uet_git.gitrepo.repo import Repo


def _settle() -> None:
    """Past the window in which a change may share its time stamps with the next one."""
    time.sleep(looserefs.SETTLED_NS / 1e9 + 0.02)


def _git_refs(path: Path) -> dict[str, bytes]:
    out = git(path, "for-each-ref", "--format=%(objectname) %(refname)")
    return {name: oid.encode() for oid, name in (ln.split() for ln in out.splitlines())}


@pytest.fixture
def packed(tmp_path: Path) -> tuple[Path, str, str]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    first = git(path, "rev-parse", "HEAD")
    (path / "a.txt").write_text("b\n")
    git(path, "commit", "-qam", "second")
    second = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", "refs/heads/other", first)
    git(path, "pack-refs", "--all", "--prune")
    return path, first, second


def test_packed_index_follows_git_and_in_place_rewrites(packed) -> None:
    path, first, second = packed
    common = path / ".git"
    _settle()
    assert looserefs.packed_index(common) == _git_refs(path)
    assert looserefs.packed_index(common) is looserefs.packed_index(common)  # kept
    git(path, "update-ref", "refs/heads/third", second)
    git(path, "pack-refs", "--all", "--prune")  # a new file renamed over the old one
    assert looserefs.packed_index(common) == _git_refs(path)
    _settle()
    assert looserefs.packed_index(common) == _git_refs(path)
    # In place, same size: only the change time tells.
    data = (common / "packed-refs").read_bytes()
    swapped = data.replace(f"{first} refs/heads/other".encode(),
                           f"{second} refs/heads/other".encode())
    assert swapped != data and len(swapped) == len(data)
    with open(common / "packed-refs", "r+b") as f:
        f.write(swapped)
    assert looserefs.packed_index(common)["refs/heads/other"] == second.encode()
    assert _git_refs(path)["refs/heads/other"] == second.encode()
    _settle()  # settled after the change: told apart from the kept answer by the key alone
    assert looserefs.packed_index(common)["refs/heads/other"] == second.encode()
    with open(common / "packed-refs", "r+b") as f:
        f.write(data)
    _settle()
    assert looserefs.packed_index(common) == _git_refs(path)
    assert looserefs.packed_index(common)["refs/heads/other"] == first.encode()


def test_a_file_changed_just_now_is_not_keyed(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x\n")
    assert looserefs.stat_key(str(f)) is None
    assert looserefs.stat_key(str(tmp_path / "missing")) == ()
    _settle()
    key = looserefs.stat_key(str(f))
    assert key is not None and key != ()


def _git_sees_a_repository(path: Path) -> bool:
    return sp.run(["git", "rev-parse", "--git-dir"], cwd=path, capture_output=True,
                  env={**os.environ, "GIT_CEILING_DIRECTORIES": str(path.parent)}
                  ).returncode == 0


def test_files_refs_follows_head_and_the_ref_storage(packed) -> None:
    path, _, _ = packed
    repo = Repo.open(path)
    common = path / ".git"
    _settle()
    assert repo.files_refs() == common
    assert repo.files_refs() == common
    head = (common / "HEAD").read_bytes()
    bad = b"xef: refs/heads/main\n"
    assert len(bad) == len(head)
    with open(common / "HEAD", "r+b") as f:  # in place: git no longer opens the directory
        f.write(bad)
    assert not _git_sees_a_repository(path)
    assert repo.files_refs() is None
    _settle()
    assert repo.files_refs() is None
    with open(common / "HEAD", "r+b") as f:
        f.write(head)
    assert _git_sees_a_repository(path)
    assert repo.files_refs() == common
    _settle()
    assert repo.files_refs() == common
    (common / "reftable").mkdir()  # refs not in files: only git may read them
    assert repo.files_refs() is None
    (common / "reftable").rmdir()
    assert repo.files_refs() == common
    assert repo.read_ref("refs/heads/other") == git(path, "rev-parse", "refs/heads/other")


def test_files_refs_checks_the_environment_every_time(packed, monkeypatch) -> None:
    path, _, _ = packed
    repo = Repo.open(path)
    _settle()
    assert repo.files_refs() == path / ".git"
    monkeypatch.setenv("GIT_DIR", str(path / ".git"))
    assert repo.files_refs() is None
