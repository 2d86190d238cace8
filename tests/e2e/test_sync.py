"""Ledger sync between repositories: `uet push` / `uet fetch` against a bare remote over file://,
and the read commands in a bare repository (a CI server's mirror)."""

from __future__ import annotations

import shutil
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, module_git_env
from tests.e2e.helpers import (
    fsck_clean,
    last_run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
)
from tests.hooks.ledgerkit import scripted_run


def _quarantined_run(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """A (a run with `a` quarantined, `c` committed) and an empty bare B as A's origin."""
    flag = shared_dir(tmp_path) / "flag"
    a = setup_repo(tmp_path / "A", config=sandbox_writable(flag.parent), workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": [f"test -f {flag}"]},
        "c": {"command": "echo c > c.txt"},
    })
    run_ok(a, "run", code=1)
    b = tmp_path / "B.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(b))
    git(a, "remote", "add", "origin", b.as_uri())
    git(a, "push", "-q", "origin", "main")
    return a, b, flag, last_run(a)


@pytest.fixture(scope="module")
def scripted_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A with a recorded run (no tool runs: fast; `d` is quarantined, `b` too) and B, its
    bare origin, holding nothing of uet's yet: made once for the module, copied per test."""
    root = tmp_path_factory.mktemp("sync-template")
    with module_git_env(root):
        a = make_repo(root / "A")
        s, _ = scripted_run(a)
        b = root / "B.git"
        git(root, "init", "-q", "--bare", "--initial-branch=main", str(b))
        git(a, "remote", "add", "origin", b.as_uri())
        git(a, "push", "-q", "origin", "main")
    return root, s.run


Scripted = tuple[Path, Path, str]


@pytest.fixture
def scripted(tmp_path: Path, scripted_template: tuple[Path, str]) -> Scripted:
    """A copy of the template's A and B in tmp_path, A's origin pointing at the copy of B."""
    root, run_id = scripted_template
    a, b = tmp_path / "A", tmp_path / "B.git"
    shutil.copytree(root / "A", a, symlinks=True)
    shutil.copytree(root / "B.git", b, symlinks=True)
    git(a, "config", "remote.origin.url", b.as_uri())
    return a, b, run_id


def _clone(tmp_path: Path, b: Path) -> Path:
    c = tmp_path / "C"
    git(tmp_path, "clone", "-q", b.as_uri(), str(c))
    return c


def test_plain_refspec_breaks_the_ledger(tmp_path: Path, scripted: Scripted):
    """What the README used to advise: a state change made elsewhere leaves the old state ref
    next to the new one (fsck fails); `uet fetch` instead leaves exactly one."""
    a, b, run_id = scripted
    git(a, "push", "-q", "origin", "refs/uet/*:refs/uet/*")
    c = _clone(tmp_path, b)
    git(c, "fetch", "-q", "origin", "refs/uet/*:refs/uet/*")
    run_ok(c, "drop", "d")
    git(c, "push", "-q", "origin", "refs/uet/*:refs/uet/*")
    git(a, "fetch", "-q", "origin", "refs/uet/*:refs/uet/*")
    refs = git(a, "for-each-ref", "--format=%(refname)", f"refs/uet/*/{run_id}/d").split()
    assert len(refs) == 2, refs  # quarantined AND dropped
    run_ok(a, "fsck", code=1)
    run_ok(c, "push")  # B's state refs of the run made equal to C's: the stale one pruned
    run_ok(a, "fetch")  # and A's to B's
    assert git(a, "for-each-ref", "--format=%(refname)", f"refs/uet/*/{run_id}/d") == (
        f"refs/uet/dropped/{run_id}/d")
    for repo in (a, b, c):
        fsck_clean(repo)


def test_push_fetch_retry_elsewhere_keeps_every_side_clean(tmp_path: Path):
    a, b, flag, run_id = _quarantined_run(tmp_path)
    run_ok(a, "push")
    assert states(b, run_id) == {"a": "quarantined", "c": "committed"}
    c = tmp_path / "C"
    git(tmp_path, "clone", "-q", b.as_uri(), str(c))
    run_ok(c, "fetch")
    assert states(c, run_id) == {"a": "quarantined", "c": "committed"}
    flag.touch()
    run_ok(c, "retry", "a")
    out = run_ok(c, "push", "origin", run_id).stdout
    assert f"{run_id}: pushed" in out
    run_ok(a, "fetch", "origin")
    assert states(a, run_id) == {"a": "committed", "c": "committed"}
    status = run_ok(a, "status", run_id).stdout
    assert "committed" in status and "quarantined" not in status
    for repo in (a, b, c):
        fsck_clean(repo)
    # Nothing left behind in the scratch namespace; a second sync is a no-op.
    assert git(a, "for-each-ref", "refs/uet-incoming/") == ""
    assert "up to date" in run_ok(a, "fetch").stdout
    assert "up to date" in run_ok(c, "push").stdout


def test_diverged_ledger_is_refused_and_nothing_moves(tmp_path: Path, scripted: Scripted):
    a, b, run_id = scripted
    run_ok(a, "push")
    c = _clone(tmp_path, b)
    run_ok(c, "fetch")
    run_ok(c, "drop", "d")  # C records one transition ...
    run_ok(a, "drop", "b")  # ... A another, and pushes it first
    run_ok(a, "push")
    before = git(b, "for-each-ref", "refs/uet/")
    proc = run_ok(c, "push", code=2)
    assert proc.stderr.strip().count("\n") == 0
    assert f"run {run_id}" in proc.stderr and "diverged" in proc.stderr
    assert git(b, "for-each-ref", "refs/uet/") == before
    local = git(c, "for-each-ref", "refs/uet/")
    assert "diverged" in run_ok(c, "fetch", code=2).stderr
    assert git(c, "for-each-ref", "refs/uet/") == local
    assert git(c, "for-each-ref", "refs/uet-incoming/") == ""
    for repo in (b, c):
        fsck_clean(repo)


def test_read_commands_in_a_bare_mirror(tmp_path: Path, scripted: Scripted):
    a, b, run_id = scripted
    run_ok(a, "push")
    status = run_ok(b, "status").stdout
    assert "quarantined" in status and run_id in status
    assert run_ok(b, "status", "--json").stdout == run_ok(a, "status", "--json").stdout
    assert run_ok(b, "log", run_id).stdout == run_ok(a, "log", run_id).stdout
    assert run_ok(b, "show", "b").stdout == run_ok(a, "show", "b").stdout
    fsck_clean(b)


def test_status_remote_reads_ref_names_without_a_clone(tmp_path: Path, scripted: Scripted):
    a, b, run_id = scripted
    run_ok(a, "push")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_ok(elsewhere, "status", "--remote", b.as_uri(), run_id[:12]).stdout
    assert out.splitlines() == [f"run {run_id} in {b.as_uri()}", "a  committed",
                                "b  quarantined", "c  committed", "d  quarantined",
                                "e  dropped"]


def test_a_recorded_rebase_moves_the_integration_ref_elsewhere(tmp_path: Path):
    a = setup_repo(tmp_path / "A", workstreams={"w": {"command": "echo w > w.txt"}})
    run_ok(a, "run", "--land", "never")
    run_id = last_run(a)
    b = tmp_path / "B.git"
    git(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(b))
    git(a, "remote", "add", "origin", b.as_uri())
    git(a, "push", "-q", "origin", "main")
    run_ok(a, "push")
    c = _clone(tmp_path, b)
    run_ok(c, "fetch")
    old = git(c, "rev-parse", f"refs/uet/integration/{run_id}")
    (a / "other.txt").write_text("x\n")
    git(a, "add", "other.txt")
    git(a, "commit", "-q", "-m", "the target moves on")
    run_ok(a, "land", "--rebase")
    new = git(a, "rev-parse", f"refs/uet/integration/{run_id}")
    off_line = sp.run(["git", "merge-base", "--is-ancestor", old, new], cwd=a)
    assert off_line.returncode == 1  # not a fast-forward: only the recorded rebase allows it
    run_ok(a, "push")
    run_ok(c, "fetch")
    assert git(c, "rev-parse", f"refs/uet/integration/{run_id}") == new
    for repo in (a, b, c):
        fsck_clean(repo)
