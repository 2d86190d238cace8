"""A tamper snapshot starts no process; a config file is parsed by git only when its bytes
changed (to name the key); a worktree's ties (``commondir``, ``gitdir``, ``locked``, its
``.git`` file) are checked and put back, even when its whole admin dir went."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.tamper import (
    MAX_KEPT,
    changes,
    restore,
    snapshot,
    ties_of,
    with_ties,
    worktree_snapshot,
)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Repo, Path]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(path, "config", "extensions.worktreeConfig", "true")
    wt = tmp_path / "wt"
    git(path, "worktree", "add", "-q", "--detach", str(wt))
    git(wt, "config", "--worktree", "user.slot", "0")
    git(path, "update-ref", "refs/uet/runs/r1/x", "HEAD")
    return Repo.open(path), wt


def _git_starts(trace: Path) -> int:
    if not trace.exists():
        return 0
    return sum(1 for line in trace.read_text().splitlines() if '"event":"start"' in line)


@pytest.fixture
def trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(out))
    return out


def test_snapshots_start_no_git_and_unchanged_config_is_never_parsed(setup, trace) -> None:
    repo, wt = setup
    ties = ties_of(repo, wt)
    before, own = snapshot(repo, [ties]), worktree_snapshot(repo, ties)
    assert changes(before, snapshot(repo, [ties])) == []
    assert changes(own, worktree_snapshot(repo, ties)) == []
    assert _git_starts(trace) == 0
    assert "refs/heads/main" in before.refs and not any(
        r.startswith("refs/uet/") for r in before.refs)
    assert set(own.files) == {f"{ties.admin}/config.worktree", f"{ties.admin}/commondir",
                              f"{ties.admin}/gitdir", ties.gitfile}
    # One config file changed: git parses that file's two versions, nothing else.
    git(wt, "config", "--worktree", "core.sshCommand", "evil")
    starts = _git_starts(trace)
    assert changes(own, worktree_snapshot(repo, ties)) == [
        f"{ties.admin}/config.worktree: core.sshcommand set to 'evil'"]
    assert _git_starts(trace) - starts == 2


def test_a_big_config_is_still_named_by_key(setup) -> None:
    repo, _ = setup
    (repo.common_dir / "config").open("a").write(
        "[x]\n" + "".join(f"\tk{i} = {'v' * 60}\n" for i in range(MAX_KEPT // 60)))
    before = snapshot(repo)
    assert before.files["config"].data is None and "config" in before.settings
    git(repo.workdir, "config", "core.fsmonitor", "/tmp/evil")
    assert changes(before, snapshot(repo)) == ["config: core.fsmonitor set to '/tmp/evil'"]


def test_ties_rewritten_are_named_and_put_back(setup, tmp_path: Path) -> None:
    repo, wt = setup
    ties = ties_of(repo, wt)
    admin = repo.common_dir / ties.admin
    commondir, gitfile = (admin / "commondir").read_bytes(), (wt / ".git").read_bytes()
    before = snapshot(repo, [ties])
    (admin / "commondir").write_text(f"{tmp_path}/fake\n")
    (wt / ".git").write_text(f"gitdir: {tmp_path}/fake\n")
    (admin / "locked").write_text("mine\n")
    after = snapshot(repo, [ties])
    assert changes(before, after) == [f"{wt}/.git changed", f"{ties.admin}/commondir changed",
                                      f"{ties.admin}/locked added"]
    done = restore(repo, before, after)
    assert not any("not restored" in d for d in done), done
    assert (admin / "commondir").read_bytes() == commondir
    assert (wt / ".git").read_bytes() == gitfile
    assert not (admin / "locked").exists()
    assert changes(before, snapshot(repo, [ties])) == []


def test_a_watched_admin_dir_removed_counts_an_unwatched_one_does_not(setup,
                                                                      tmp_path: Path) -> None:
    repo, wt = setup
    other = tmp_path / "other"
    git(repo.workdir, "worktree", "add", "-q", "--detach", str(other))
    git(other, "config", "--worktree", "user.slot", "1")
    ties = ties_of(repo, wt)
    before = snapshot(repo, [ties])
    git(repo.workdir, "worktree", "remove", "--force", str(other))  # the pool's own removal
    assert changes(before, snapshot(repo, [ties])) == []
    shutil.rmtree(repo.common_dir / ties.admin)
    lines = changes(before, snapshot(repo, [ties]))
    assert f"{ties.admin}/commondir removed" in lines and f"{ties.admin}/gitdir removed" in lines


def test_ties_added_to_an_open_baseline_are_those_of_that_moment(setup) -> None:
    repo, wt = setup
    ties = ties_of(repo, wt)
    base = snapshot(repo)
    assert ties.gitfile not in base.files
    base = with_ties(base, ties)
    assert ties.gitfile in base.files and base.ties == (ties,)
    assert with_ties(base, ties) is base
    (wt / ".git").write_text("gitdir: /nowhere\n")
    assert changes(base, snapshot(repo, [ties])) == [f"{wt}/.git changed"]
