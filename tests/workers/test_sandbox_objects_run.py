"""The sandbox's private object directory through ``uet run``: a tool's own commits still reach
its patch (``tool-commits.txt``), acceptance commands may commit, and a forged object never
reaches the store nor turns into an internal error."""

from __future__ import annotations

import os
import signal
import subprocess as sp
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import (
    fsck_clean,
    last_run,
    run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
)
from tests.e2e.started import start_uet
from uet_git.gitrepo import objimport
from uet_git.gitrepo.repo import Repo
from uet_git.workers import sandbox

pytestmark = pytest.mark.skipif(sandbox.available() is not None,
                                reason=f"no sandbox here: {sandbox.available()}")

ID = "-c user.name=t -c user.email=t@t"
LOOSE = 'loose() { echo "$(git rev-parse --git-common-dir)/objects/$(echo $1 | cut -c1-2)/' \
        '$(echo $1 | cut -c3-)"; }; '


def _evidence(repo: Path, ws: str, name: str) -> str:
    return git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:evidence/{ws}/1/{name}")


def _private_gone(repo: Path) -> bool:
    """No private object directory is left holding anything (an empty one may stay)."""
    d = repo / ".git" / "uet" / "sandbox-objects"
    return not d.exists() or all(
        objimport.is_fresh_store(p, [sandbox.STORE_MOUNT]) for p in d.iterdir())


def test_a_tools_own_commits_reach_its_patch(tmp_path: Path) -> None:
    tool = (f"echo one > a.txt && git add a.txt && git {ID} commit -qm 'tool: one' && "
            f"echo two > b.txt && git add b.txt && git {ID} commit -qm 'tool: two'")
    repo = setup_repo(tmp_path / "repo", workstreams={"w": {"tool": "shell", "command": tool}})
    run_ok(repo, "run")
    assert states(repo) == {"w": "committed"}
    commits = _evidence(repo, "w", "tool-commits.txt").splitlines()
    assert [c.split(" ", 1)[1] for c in commits] == ["tool: one", "tool: two"]
    assert git(repo, "show", "main:a.txt") == "one" and git(repo, "show", "main:b.txt") == "two"
    for c in commits:  # the tool's own commits were imported into the real store
        assert git(repo, "cat-file", "-t", c.split()[0]) == "commit"
    assert _private_gone(repo)
    fsck_clean(repo)


def test_a_forged_blob_the_index_names_is_not_imported_and_the_file_is_hashed_again(
        tmp_path: Path) -> None:
    # git add writes blob(good); the tool then puts "evil" in that blob's file.
    tool = LOOSE + (f"echo good > f.txt && git add f.txt && git {ID} commit -qm add && "
                    "b=$(git rev-parse HEAD:f.txt) && "
                    "e=$(printf 'evil\\n' | git hash-object -w --stdin) && "
                    "cp -f $(loose $e) $(loose $b)")
    repo = setup_repo(tmp_path / "repo", workstreams={"w": {"tool": "shell", "command": tool}})
    run_ok(repo, "run")
    assert states(repo) == {"w": "committed"}
    assert git(repo, "show", "main:f.txt") == "good"
    assert "do not match their names and were not imported" in _evidence(repo, "w",
                                                                          "tool.stderr")
    fsck_clean(repo)


def test_a_forged_commit_object_is_not_imported_and_the_run_goes_on(tmp_path: Path) -> None:
    tool = LOOSE + (f"echo new > f.txt && git add f.txt && git {ID} commit -qm add && "
                    "e=$(printf 'evil\\n' | git hash-object -w --stdin) && "
                    "cp -f $(loose $e) $(loose $(git rev-parse HEAD))")
    repo = setup_repo(tmp_path / "repo", workstreams={"w": {"tool": "shell", "command": tool}})
    proc = run_ok(repo, "run")
    assert "internal-error" not in proc.stdout + proc.stderr
    assert states(repo) == {"w": "committed"}
    assert git(repo, "show", "main:f.txt") == "new"
    # The kept worktree's own reflog still names the commit the tool forged (a tool can write
    # that reflog anyway: its admin dir is writable); the repository itself is whole.
    proc = sp.run(["git", "fsck", "--strict", "--no-progress", "--no-reflogs", "--no-dangling"],
                  cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stdout + proc.stderr
    assert run_ok(repo, "fsck").returncode == 0


def test_acceptance_commands_may_commit_and_make_stashes(tmp_path: Path) -> None:
    shared = shared_dir(tmp_path)
    acceptance = (f"git {ID} commit -q --allow-empty -m acc && git rev-parse HEAD >> "
                  f"{shared}/acc && git stash create > /dev/null && "
                  f"! touch {sandbox.STORE_MOUNT}/probe 2>/dev/null")
    repo = setup_repo(tmp_path / "repo", config=sandbox_writable(shared), workstreams={
        "w": {"tool": "shell", "command": "echo x > x.txt", "acceptance": [acceptance]}})
    run_ok(repo, "run")
    assert states(repo) == {"w": "committed"}
    for oid in (shared / "acc").read_text().split():
        assert git(repo, "cat-file", "-t", oid) == "commit"  # imported after the command
    assert git(repo, "show", "main:x.txt") == "x"
    assert _private_gone(repo)
    fsck_clean(repo)


def test_an_index_naming_a_deleted_object_is_no_internal_error(tmp_path: Path) -> None:
    # The tool staged a file, then deleted the blob from its store: the index names an object
    # that was never imported. The worktree still has the file: a patch of it, or tool-failed.
    tool = LOOSE + ("echo good > f.txt && git add f.txt && rm -f $(loose $(git rev-parse "
                    ":f.txt))")
    repo = setup_repo(tmp_path / "repo", workstreams={"w": {"tool": "shell", "command": tool}})
    out = run(repo, "run")
    assert "internal-error" not in out.stdout + out.stderr, out.stdout
    if states(repo) == {"w": "committed"}:
        assert git(repo, "show", "main:f.txt") == "good"
    else:
        assert states(repo) == {"w": "quarantined"}
        assert "tool-failed" in out.stdout or "bad-tree" in out.stdout, out.stdout
    fsck_clean(repo)


def _killed_mid_tool(tmp_path: Path) -> Path:
    """A run killed (SIGKILL) while its sandboxed tool sleeps, after the tool staged and
    committed: those objects are in its private store only."""
    shared = shared_dir(tmp_path)
    marker, go = shared / "started", shared / "go"
    slow = (f"echo staged > s.txt && git add s.txt && git {ID} commit -qm staged && "
            f"echo more > m.txt && git add m.txt && touch {marker} && "
            f"{{ [ -f {go} ] || sleep 10; }} && echo slow > slow.txt")
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(shared),
                      workstreams={"slow": {"command": slow}})
    with start_uet(repo, "run") as proc:  # a process of its own, killed below
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the tool never started"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    go.touch()
    return repo


def _resumed_whole(repo: Path) -> None:
    res = run_ok(repo, "resume")
    assert states(repo) == {"slow": "committed"}, res.stdout
    assert git(repo, "show", "main:s.txt") == "staged"
    fsck_clean(repo)


def test_killed_mid_tool_its_objects_are_recovered_before_the_worktree_is_snapshotted(
        tmp_path: Path) -> None:
    repo = _killed_mid_tool(tmp_path)
    worktrees = sorted((repo / ".git" / "uet" / "worktrees").iterdir())
    done = [sandbox.recover_objects(Repo.open(repo), wt) for wt in worktrees if wt.is_dir()]
    assert any(d is not None and d.written >= 3 for d in done)  # blobs, tree, commit
    _resumed_whole(repo)


def test_uet_killed_while_a_sandboxed_tool_ran_then_resume_keeps_the_store_whole(
        tmp_path: Path) -> None:
    _resumed_whole(_killed_mid_tool(tmp_path))
