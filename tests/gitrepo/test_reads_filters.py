"""The filter-driver view (``Repo._filters_now``) skips git only when no config file git
reads can name a driver: wherever a tool planted one (repository config, a linked
worktree's ``config.worktree``, an included file, the global config, any spelling of the
section), the view is git's own answer."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import filters
from uet_git.gitrepo.repo import Repo

PLANTS = [
    "[filter \"evil\"]\n\tclean = touch /tmp/pwned\n",
    "[FILTER \"evil\"]\n\tSmudge = touch /tmp/pwned\n",
    "[Filter.evil]\n\tprocess = touch /tmp/pwned\n",
    "[include]\n\tpath = {extra}\n",
    "[includeIf \"gitdir:/\"]\n\tpath = {extra}\n",
    "[core]\n\tfoo = bar\n",  # mentions nothing: no process, no driver
]


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    git(path, "config", "extensions.worktreeConfig", "true")
    git(path, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    return Repo.open(path)


def _where(repo: Repo, place: str) -> Path:
    if place == "common":
        return repo.common_dir / "config"
    return repo.common_dir / "worktrees" / "wt" / "config.worktree"


@pytest.mark.parametrize("place", ["common", "worktree"])
@pytest.mark.parametrize("plant", PLANTS)
def test_view_is_gits_wherever_a_driver_is_planted(repo: Repo, tmp_path: Path, place: str,
                                                   plant: str) -> None:
    before = repo.trusted_filters()
    extra = tmp_path / "extra.cfg"
    extra.write_text("[filter \"inc\"]\n\tclean = touch /tmp/pwned\n")
    with _where(repo, place).open("a") as f:
        f.write(plant.replace("{extra}", str(extra)))
    wt = tmp_path / "wt"
    admin = repo.common_dir / "worktrees" / "wt"
    for cwd, lead in ((repo.workdir, ()), (wt, ()), (repo.workdir, ("--git-dir", str(admin)))):
        gits = filters.read_filters(cwd, lead)
        assert repo._filters_now(cwd, lead) == gits, (cwd, lead)
    assert repo.trusted_filters() == before  # pinned at open, whatever came since


def test_global_config_and_environment(repo: Repo, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    glob = tmp_path / "global.cfg"
    glob.write_text("[filter \"g\"]\n\tclean = cat\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    assert repo._filters_now(repo.workdir, ()).names == {"g"}
    glob.write_text("[user]\n\tname = x\n")
    assert repo._filters_now(repo.workdir, ()) == filters.NONE
    # Config passed in the environment is git's to read.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "filter.env.clean")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "cat")
    assert repo._filters_now(repo.workdir, ()).names == {"env"}


def test_a_planted_git_dir_in_a_worktree_is_gits_to_read(repo: Repo, tmp_path: Path) -> None:
    """A tool swaps its worktree's ``.git`` file for a repository of its own with a driver:
    the view follows git there, it does not assume the slot is still this repository's."""
    wt = tmp_path / "wt"
    (wt / ".git").unlink()
    subprocess.run(["git", "init", "-q", str(wt)], check=True)
    git(wt, "config", "filter.own.clean", "touch /tmp/pwned")
    assert repo._filters_now(wt, ()).names == {"own"} == filters.read_filters(wt).names


def test_no_mention_no_process(repo: Repo, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # a git started now would fail
    for cwd in (repo.workdir, tmp_path / "wt"):
        assert repo._filters_now(cwd, ()) == filters.NONE


def test_a_fresh_handle_keeps_the_drivers_trusted_at_open(repo: Repo) -> None:
    with (repo.common_dir / "config").open("a") as f:
        f.write("[filter \"late\"]\n\tclean = touch /tmp/pwned\n")
    copy = repo.fresh()
    assert copy.trusted_filters() == repo.trusted_filters() == filters.NONE
    assert copy._pg is not repo._pg and copy.bare == repo.bare
