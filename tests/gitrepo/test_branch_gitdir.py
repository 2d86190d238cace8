"""The answers ``gitrepo.branch`` finds without starting git (a checkout's git dir, its HEAD)
are git's: checked against the git CLI on plain layouts, and on the layouts a user or a tool
can make, where branch must leave the answer to git."""

from __future__ import annotations

import os
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.branch import fast_forward
from uet_git.gitrepo.checkouts import _plain_git_dir, git_dir_of
from uet_git.gitrepo.ffblockers import ff_blockers
from uet_git.gitrepo.repo import Repo

REF = "refs/heads/main"


def git_says(checkout: Path, env: dict[str, str] | None = None) -> Path:
    out = sp.run(["git", "rev-parse", "--absolute-git-dir"], cwd=checkout, check=True,
                 capture_output=True, text=True, env={**os.environ, **(env or {})}).stdout
    return Path(out.strip())


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo.open(make_repo(tmp_path / "repo", {"a.txt": "a\n"}))


def linked(repo: Repo, name: str, branch: str | None = None) -> Path:
    path = repo.workdir.parent / name
    if branch is None:
        git(repo.workdir, "worktree", "add", "-q", "--detach", str(path))
    else:
        git(repo.workdir, "worktree", "add", "-q", "-b", branch, str(path))
    return path


def test_plain_layouts_answered_in_process_as_git_does(repo: Repo) -> None:
    wt = linked(repo, "wt")
    for co in (repo.workdir, wt):
        assert _plain_git_dir(repo, co) == git_says(co)
        assert git_dir_of(co, repo) == git_says(co) == git_dir_of(co)


def test_separate_git_dir_answered_in_process(tmp_path: Path) -> None:
    work, store = tmp_path / "work", tmp_path / "store.git"
    git(tmp_path, "init", "-q", "-b", "main", f"--separate-git-dir={store}", str(work))
    (work / "a.txt").write_text("a\n")
    git(work, "add", "a.txt")
    git(work, "commit", "-q", "-m", "one")
    repo = Repo.open(work)
    assert _plain_git_dir(repo, work) == git_says(work) == store.resolve()
    assert git_dir_of(work, repo) == git_says(work)


@pytest.mark.parametrize("how", ["other-repo", "relative", "not-recorded-back", "no-commondir",
                                 "bad-head", "symlink", "trailing-space", "dir-elsewhere"])
def test_unusual_layouts_are_left_to_git(repo: Repo, tmp_path: Path, how: str) -> None:
    wt = linked(repo, "wt")
    dotgit = wt / ".git"
    admin = Path(dotgit.read_text().removeprefix("gitdir: ").strip())
    if how == "other-repo":
        # A tool's own repository behind the checkout's .git file: git takes it, so does branch.
        other = make_repo(tmp_path / "other", {"x": "x\n"})
        dotgit.write_text(f"gitdir: {other / '.git'}\n")
    elif how == "relative":
        dotgit.write_text(f"gitdir: {os.path.relpath(admin, wt)}\n")
    elif how == "not-recorded-back":
        (admin / "gitdir").write_text(str(tmp_path / "elsewhere" / ".git") + "\n")
    elif how == "no-commondir":
        (admin / "commondir").rename(admin / "commondir.away")
    elif how == "bad-head":
        (admin / "HEAD").write_text("garbage\n")
    elif how == "symlink":
        dotgit.unlink()
        dotgit.symlink_to(admin)
    elif how == "trailing-space":
        dotgit.write_text(f"gitdir: {admin}  \n")
    elif how == "dir-elsewhere":
        main_git = repo.workdir / ".git"
        moved = tmp_path / "moved.git"
        main_git.rename(moved)
        main_git.symlink_to(moved)
        wt = repo.workdir
    assert _plain_git_dir(repo, wt) is None
    proc = sp.run(["git", "rev-parse", "--absolute-git-dir"], cwd=wt, capture_output=True,
                  text=True)
    if proc.returncode == 0:
        assert git_dir_of(wt, repo) == Path(proc.stdout.strip())
    else:
        with pytest.raises(Exception):  # noqa: B017 - git's own failure, as before
            git_dir_of(wt, repo)


def test_git_dir_chosen_by_the_environment_is_left_to_git(repo: Repo, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    other = make_repo(tmp_path / "other", {"x": "x\n"})
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert _plain_git_dir(repo, repo.workdir) is None
    assert git_dir_of(repo.workdir, repo) == git_says(repo.workdir) == (other / ".git").resolve()


def test_head_on_another_branch_or_detached_is_read_by_git(repo: Repo) -> None:
    old = git(repo.workdir, "rev-parse", "HEAD")
    git(repo.workdir, "commit", "-q", "--allow-empty", "-m", "two")
    new = git(repo.workdir, "rev-parse", "HEAD")
    git(repo.workdir, "update-ref", REF, old)
    git(repo.workdir, "reset", "-q", "--hard", old)
    # HEAD names main (at old): in process.
    assert ff_blockers(repo, repo.workdir, old, new, ref=REF) == []
    # HEAD on another branch, at another commit: git reads it, the landing is refused.
    git(repo.workdir, "checkout", "-q", "-b", "other", new)
    lines = ff_blockers(repo, repo.workdir, old, new, ref=REF)
    assert lines == [f"{repo.workdir}: HEAD is at {new[:12]}, not {old[:12]}"]
    # Detached at old: git says so, nothing blocks.
    git(repo.workdir, "checkout", "-q", "--detach", old)
    assert ff_blockers(repo, repo.workdir, old, new, ref=REF) == []


def test_touched_landed_file_lands_even_with_optional_locks_off(
        repo: Repo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index copy is refreshed before ``read-tree -m -u`` (it trusts stat data), also when
    the user's environment turns git's optional index writes off."""
    old = git(repo.workdir, "rev-parse", "HEAD")
    wt = linked(repo, "stage")
    (wt / "a.txt").write_text("a2\n")
    git(wt, "commit", "-q", "-am", "two")
    new = git(wt, "rev-parse", "HEAD")
    git(repo.workdir, "worktree", "remove", "--force", str(wt))
    a = repo.workdir / "a.txt"
    a.unlink()
    a.write_text("a\n")  # the same content in a new file: its stat data no longer matches
    os.utime(a, (1_000_000_000, 1_000_000_000))
    monkeypatch.setenv("GIT_OPTIONAL_LOCKS", "0")
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert a.read_text() == "a2\n"
    assert git(repo.workdir, "status", "--porcelain") == ""
