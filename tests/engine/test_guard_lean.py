"""The tamper guard's fixed cost and reach: sandboxed it reads only the worktree's own admin
files (no process); unsandboxed it also watches each running worktree's ties, a workstream
joining an open interval included; a ``[sandbox] writable`` path inside the git dir makes it
check everything."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.engine.guard import TamperGuard, guard_for
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Repo, Path, Path]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    wts = []
    for name in ("w0", "w1"):
        git(path, "worktree", "add", "-q", "--detach", str(tmp_path / name))
        wts.append(tmp_path / name)
    return Repo.open(path), wts[0], wts[1]


def _starts(trace: Path) -> int:
    return trace.read_text().count('"event":"start"') if trace.exists() else 0


def test_sandboxed_enter_and_leave_start_no_process(setup, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo, w0, _ = setup
    trace = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    guard = TamperGuard(repo, sandboxed=True)
    for _ in range(3):
        guard.enter("a", w0)
        assert guard.leave("a") is None
    assert _starts(trace) == 0


def test_unsandboxed_ties_of_a_late_joiner_are_watched(setup, tmp_path: Path) -> None:
    repo, w0, w1 = setup
    guard = TamperGuard(repo, sandboxed=False)
    guard.enter("a", w0)  # the interval's baseline: before w1's workstream starts
    guard.enter("b", w1)
    original = (w1 / ".git").read_text()
    (w1 / ".git").write_text(f"gitdir: {tmp_path}/fake\n")
    seen = guard.leave("b")
    assert seen is not None and seen.changes == [f"{w1}/.git changed"], seen
    assert seen.suspects == ["b", "a"]
    assert (w1 / ".git").read_text() == original
    assert guard.leave("a") is not None  # it ran in that interval too
    guard.enter("a", w0)
    assert guard.leave("a") is None


def test_unsandboxed_a_finished_workstreams_ties_are_not_watched_after_it(setup) -> None:
    repo, w0, w1 = setup
    guard = TamperGuard(repo, sandboxed=False)
    guard.enter("a", w0)
    guard.enter("b", w1)
    assert guard.leave("b") is None
    git(repo.workdir, "worktree", "remove", "--force", str(w1))  # the pool's, after b's result
    assert guard.leave("a") is None


def test_a_writable_path_inside_the_git_dir_checks_everything(setup) -> None:
    repo, _, _ = setup
    hooks = str(repo.common_dir / "hooks")
    assert guard_for(repo, SandboxConfig(writable=[hooks]), sandboxed=True).sandboxed is False
    assert guard_for(repo, SandboxConfig(writable=["/tmp/cache-x"]), sandboxed=True).sandboxed
    assert not guard_for(repo, SandboxConfig(), sandboxed=False).sandboxed
