"""``Repo.open`` finds a main worktree's top without git only where git's discovery surely
answers the same; every other layout (and anything a tool could have planted in the config
to change what git finds) is opened by git, with the same answer and the same errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.gitcmd import GitError
from uet_git.gitrepo.repo import Repo, _main_worktree_top


def _same(path: Path, *, bare_ok: bool = False) -> Repo:
    ours = Repo.open(path, bare_ok=bare_ok)
    gits = Repo.open_with_git(path, bare_ok=bare_ok)
    assert (ours.workdir, ours.git_dir, ours.common_dir, ours.bare) == \
        (gits.workdir, gits.git_dir, gits.common_dir, gits.bare)
    return ours


def test_main_worktree_top_opens_without_git(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r")
    _same(path)
    link = tmp_path / "link"
    link.symlink_to(path)
    _same(link)
    assert _main_worktree_top(path) == (path / ".git").resolve()
    assert _main_worktree_top(link) == (path / ".git").resolve()


@pytest.mark.parametrize("plant", [
    "[core]\n\tbare = true\n",
    "[core]\n\tworktree = /\n",
    "[extensions]\n\tworktreeConfig = true\n",
    "[include]\n\tpath = other\n",
    "[core]\n\trepositoryformatversion = 1\n",
])
def test_config_that_changes_discovery_goes_to_git(tmp_path: Path, plant: str) -> None:
    path = make_repo(tmp_path / "r")
    with (path / ".git" / "config").open("a") as f:
        f.write(plant)
    assert _main_worktree_top(path) is None
    try:
        gits: object = Repo.open_with_git(path, bare_ok=True)
    except GitError as exc:
        gits = str(exc)
    try:
        ours: object = Repo.open(path, bare_ok=True)
    except GitError as exc:
        ours = str(exc)
    if isinstance(gits, Repo):
        assert isinstance(ours, Repo) and ours.workdir == gits.workdir and ours.bare == gits.bare
    else:
        assert ours == gits


def test_other_layouts_go_to_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_repo(tmp_path / "r", {"a/b.txt": "x\n"})
    git(path, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    for p in (path / "a", tmp_path / "wt", tmp_path / "bare.git"):
        assert _main_worktree_top(p) is None
    _same(path / "a")
    _same(tmp_path / "wt")
    _same(tmp_path / "bare.git", bare_ok=True)
    (tmp_path / "moved").mkdir()
    os.symlink(path / ".git", tmp_path / "moved" / ".git")  # a symlinked .git: git's call
    assert _main_worktree_top(tmp_path / "moved") is None
    monkeypatch.setenv("GIT_DIR", str(path / ".git"))
    assert _main_worktree_top(path) is None
    monkeypatch.delenv("GIT_DIR")
    (path / ".git" / "HEAD").write_text("garbage\n")
    assert _main_worktree_top(path) is None
    with pytest.raises(GitError, match="not inside a git repository"):
        Repo.open(path)
