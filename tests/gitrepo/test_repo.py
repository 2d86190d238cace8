"""Opening repositories: subdirectories, linked worktrees, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.refs import RefTransaction
from uet_git.gitrepo.repo import GitError, Repo, git_version, require_git


def test_open_from_a_subdirectory(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a/b/c.txt": "x\n"})
    repo = Repo.open(path / "a" / "b")
    assert repo.workdir == path.resolve()
    assert repo.common_dir == (path / ".git").resolve()
    assert repo.rev_parse("HEAD") == git(path, "rev-parse", "HEAD")
    assert repo.current_branch() == "main"
    assert repo.uet_dir == (path / ".git" / "uet").resolve() and repo.uet_dir.is_dir()
    assert isinstance(repo.transaction(), RefTransaction)


def test_open_from_a_linked_worktree(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo")
    git(path, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    (tmp_path / "wt" / "sub").mkdir()
    repo = Repo.open(tmp_path / "wt" / "sub")
    assert repo.workdir == path.resolve()
    assert repo.common_dir == (path / ".git").resolve()
    assert repo.git_dir == (path / ".git" / "worktrees" / "wt").resolve()
    head = git(path, "rev-parse", "HEAD")
    repo.transaction().create("refs/uet/x", head).commit()
    assert git(path, "rev-parse", "refs/uet/x") == head  # refs are shared
    assert str(repo._pg.head.target) == head


def test_bare_and_outside_are_one_line_errors(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(GitError, match="a bare repository") as info:
        Repo.open(tmp_path / "bare.git")
    assert "\n" not in str(info.value)
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(GitError, match="not inside a git repository"):
        Repo.open(outside)
    with pytest.raises(GitError, match="no such directory"):
        Repo.open(tmp_path / "missing")
    path = make_repo(tmp_path / "repo")
    with pytest.raises(GitError, match="inside the git directory"):
        Repo.open(path / ".git")


def test_git_version_is_checked() -> None:
    assert git_version() >= (2, 39, 0)
    require_git()


def test_read_and_list_refs(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo")
    repo = Repo.open(path)
    head = repo.rev_parse("HEAD")
    assert repo.read_ref("refs/uet/none") is None
    repo.transaction().create("refs/uet/a/1", head).create("refs/uet/b", head).commit()
    assert repo.list_refs("refs/uet/") == {"refs/uet/a/1": head, "refs/uet/b": head}
    assert repo.read_ref("refs/uet/b") == head
    with pytest.raises(GitError, match="git rev-parse"):
        repo.git("rev-parse", "--verify", "nope")
    # A name that looks like an option is a name, never an option.
    assert repo.read_ref("--git-dir") is None
    assert repo.rev_parse("--git-dir") is None
