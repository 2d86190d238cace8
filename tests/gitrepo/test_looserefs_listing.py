"""The ref files read in process (gitrepo/looserefs.py ``list_refs``, ``plain_store``) give the
git CLI's answer: thousands of loose refs in a few directories, entries git would not take for
refs, and a repository git no longer takes for one (its ``HEAD`` deleted by a tool)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import GitError
from uet_git.gitrepo.looserefs import Unsure, git_directory, list_refs, plain_store
from uet_git.gitrepo.refs import for_each_ref, for_each_ref_git
from uet_git.gitrepo.repo import Repo

PATTERNS = ("refs/uet/ledger/r1", "refs/uet/committed/r1/", "refs/uet/quarantined/r1/",
            "refs/heads/")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    head = git(path, "rev-parse", "HEAD")
    ops = "".join(f"create refs/uet/committed/r1/ws-{i:04d} {head}\n" for i in range(300))
    ops += "".join(f"create refs/uet/quarantined/r1/q{i} {head}\n" for i in range(5))
    ops += f"create refs/uet/ledger/r1 {head}\ncreate refs/uet/committed/r2/x {head}\n"
    ops += f"create refs/uet/committed/r1/deeper/ws {head}\n"
    git(path, "update-ref", "--stdin", input=ops)
    return Repo.open(path)


def _listed(repo: Repo) -> dict[str, str]:
    return list_refs(repo.common_dir, PATTERNS)


def test_many_loose_refs_are_listed_as_git_lists_them(repo: Repo) -> None:
    assert _listed(repo) == for_each_ref_git(repo, *PATTERNS)
    assert len(_listed(repo)) == 300 + 5 + 1 + 1 + 1  # the deeper one too, as git lists it
    # Some packed, some loose over packed, one deleted from both.
    git(repo.workdir, "pack-refs", "--all")
    git(repo.workdir, "update-ref", "refs/uet/committed/r1/ws-0001", "HEAD")
    git(repo.workdir, "update-ref", "-d", "refs/uet/committed/r1/ws-0002")
    git(repo.workdir, "update-ref", "refs/uet/committed/r1/ws-9999", "HEAD")
    assert _listed(repo) == for_each_ref_git(repo, *PATTERNS)


@pytest.mark.parametrize("leaf", ["a..b", "end.", "sp ace", "x@{1}", "ctl\x01"])
def test_a_name_git_would_not_take_is_left_to_git(repo: Repo, leaf: str) -> None:
    head = git(repo.workdir, "rev-parse", "HEAD")
    (repo.common_dir / "refs/uet/committed/r1" / leaf).write_text(head + "\n")
    with pytest.raises(Unsure):
        _listed(repo)


def test_lock_and_hidden_files_are_skipped_as_git_skips_them(repo: Repo) -> None:
    head = git(repo.workdir, "rev-parse", "HEAD")
    d = repo.common_dir / "refs/uet/committed/r1"
    (d / "ws-0003.lock").write_text(head + "\n")
    (d / ".hidden").write_text(head + "\n")
    assert _listed(repo) == for_each_ref_git(repo, *PATTERNS)


def test_links_fifos_and_broken_files_are_left_to_git(repo: Repo) -> None:
    d = repo.common_dir / "refs/uet/committed/r1"
    os.symlink("ws-0001", d / "linked")
    with pytest.raises(Unsure):
        _listed(repo)
    (d / "linked").unlink()
    os.mkfifo(d / "fifo")  # never opened for a blocking read: the listing does not hang
    with pytest.raises(Unsure):
        _listed(repo)
    (d / "fifo").unlink()
    (d / "broken").write_text("not an oid\n")
    with pytest.raises(Unsure):
        _listed(repo)
    (d / "broken").unlink()
    assert _listed(repo) == for_each_ref_git(repo, *PATTERNS)


def test_a_deleted_head_leaves_the_answer_to_git(repo: Repo) -> None:
    """A tool's ``git update-ref -d`` of a ref that holds ``ref: HEAD`` deletes ``.git/HEAD``
    (with HEAD detached first): git then refuses to run in the repository at all."""
    w = repo.workdir
    (repo.common_dir / "refs/heads/a").write_text("ref: HEAD\n")
    git(w, "checkout", "-q", "--detach")
    git(w, "update-ref", "-d", "refs/heads/main")
    git(w, "update-ref", "-d", "refs/heads/a")
    assert not (repo.common_dir / "HEAD").exists()
    with pytest.raises(GitError):
        for_each_ref_git(repo, "refs/uet/ledger/r1")
    assert not git_directory(repo.common_dir) and not plain_store(repo.common_dir)
    assert repo.refs_in_process(("refs/uet/ledger/r1",)) is None
    with pytest.raises(GitError):
        for_each_ref(repo, "refs/uet/ledger/r1")


@pytest.mark.parametrize(("head", "ok"), [
    (b"ref: refs/heads/main\n", True), (b"ref:\trefs/heads/x", True),
    (b"0123456789abcdef0123456789abcdef01234567\n", True),
    (b"ref: HEAD\n", False), (b"", False), (b"0123", False), (b"refs/heads/main\n", False)])
def test_head_is_judged_as_git_judges_it(repo: Repo, head: bytes, ok: bool) -> None:
    (repo.common_dir / "HEAD").write_bytes(head)
    assert git_directory(repo.common_dir) is ok
    # The git CLI takes the directory for a repository exactly then (GIT_DIR: no discovery
    # upwards past a refused one).
    env = {**os.environ, "GIT_DIR": str(repo.common_dir)}
    res = subprocess.run(["git", "rev-parse", "--git-dir"], cwd=repo.workdir, env=env,
                         capture_output=True, check=False)
    assert (res.returncode == 0) is ok
