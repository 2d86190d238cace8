"""gitrepo/remote.py against a real bare repository over file://."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.gitcmd import GitError
from uet_git.gitrepo.remote import PushUpdate, fetch_into, ls_remote, push_atomic
from uet_git.gitrepo.repo import Repo


def _pair(tmp_path: Path) -> tuple[Repo, Path, str, str]:
    work = make_repo(tmp_path / "w")
    first = git(work, "rev-parse", "HEAD")
    git(work, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "b.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    return Repo.open(work), bare, first, second


def test_ls_remote_lists_a_prefix_without_a_local_repository(tmp_path: Path):
    repo, bare, first, second = _pair(tmp_path)
    git(repo.workdir, "push", "-q", bare.as_uri(), f"{first}:refs/uet/x/1",
        f"{second}:refs/heads/y")
    assert ls_remote(bare.as_uri(), "refs/uet/*") == {"refs/uet/x/1": first}
    with pytest.raises(GitError, match="ls-remote"):
        ls_remote((tmp_path / "nowhere").as_uri())


def test_fetch_into_writes_only_the_namespace(tmp_path: Path):
    repo, bare, first, _second = _pair(tmp_path)
    git(repo.workdir, "push", "-q", bare.as_uri(), f"{first}:refs/uet/x/1")
    got = fetch_into(repo, bare.as_uri(), ["refs/uet/x/1"], "refs/tmp-ns/")
    assert got == {"refs/uet/x/1": first}
    assert repo.list_refs("refs/uet/") == {}
    assert repo.list_refs("refs/tmp-ns/") == {"refs/tmp-ns/uet/x/1": first}


def test_push_atomic_applies_all_or_nothing_under_leases(tmp_path: Path):
    repo, bare, first, second = _pair(tmp_path)
    url = bare.as_uri()
    push_atomic(repo, url, [PushUpdate("refs/uet/a", first, None),
                            PushUpdate("refs/uet/b", second, None)])
    assert ls_remote(url, "refs/uet/*") == {"refs/uet/a": first, "refs/uet/b": second}
    # One stale lease (b is not at `first`): neither the move of a nor the delete of b happens.
    with pytest.raises(GitError, match="nothing was pushed"):
        push_atomic(repo, url, [PushUpdate("refs/uet/a", second, first),
                                PushUpdate("refs/uet/b", None, first)])
    assert ls_remote(url, "refs/uet/*") == {"refs/uet/a": first, "refs/uet/b": second}
    # A non-fast-forward replacement and a delete, both leased right.
    push_atomic(repo, url, [PushUpdate("refs/uet/b", first, second),
                            PushUpdate("refs/uet/a", None, first)])
    assert ls_remote(url, "refs/uet/*") == {"refs/uet/b": first}
