"""Ledger sync between repositories: `uet push` / `uet fetch` against a bare remote over file://,
and the read commands in a bare repository (a CI server's mirror)."""

from __future__ import annotations

import subprocess as sp
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    fsck_clean,
    last_run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
)


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


def _uet_fsck(repo: Path) -> sp.CompletedProcess[str]:
    return run_ok(repo, "fsck", code=0)


def test_plain_refspec_breaks_the_ledger(tmp_path: Path):
    """What the README used to advise: a state change made elsewhere leaves the old state ref
    next to the new one (fsck fails), and a replaced state ref is refused as non-fast-forward."""
    a, b, flag, run_id = _quarantined_run(tmp_path)
    git(a, "push", "-q", "origin", "refs/uet/*:refs/uet/*")
    c = tmp_path / "C"
    git(tmp_path, "clone", "-q", b.as_uri(), str(c))
    git(c, "fetch", "-q", "origin", "refs/uet/*:refs/uet/*")
    flag.touch()
    run_ok(c, "retry", "a")
    git(c, "push", "-q", "origin", "refs/uet/*:refs/uet/*")
    git(a, "fetch", "-q", "origin", "refs/uet/*:refs/uet/*")
    refs = git(a, "for-each-ref", "--format=%(refname)", f"refs/uet/*/{run_id}/a").split()
    assert len(refs) == 2, refs  # quarantined AND committed
    run_ok(a, "fsck", code=1)


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


def test_diverged_ledger_is_refused_and_nothing_moves(tmp_path: Path):
    a, b, flag, run_id = _quarantined_run(tmp_path)
    run_ok(a, "push")
    c = tmp_path / "C"
    git(tmp_path, "clone", "-q", b.as_uri(), str(c))
    run_ok(c, "fetch")
    run_ok(c, "drop", "a")  # C records one transition ...
    flag.touch()
    run_ok(a, "retry", "a")  # ... A another, and pushes it first
    run_ok(a, "push")
    before = git(b, "for-each-ref", "refs/uet/")
    proc = run_ok(c, "push", code=2)
    assert proc.stderr.strip().count("\n") == 0
    assert f"run {run_id}" in proc.stderr and "diverged" in proc.stderr
    assert git(b, "for-each-ref", "refs/uet/") == before
    proc = run_ok(c, "fetch", code=2)
    assert "diverged" in proc.stderr
    fsck_clean(b)
    fsck_clean(c)


def test_read_commands_in_a_bare_mirror(tmp_path: Path):
    a, b, _flag, run_id = _quarantined_run(tmp_path)
    run_ok(a, "push")
    status = run_ok(b, "status").stdout
    assert "quarantined" in status and run_id in status
    assert "a: none -> " in run_ok(b, "log", run_id).stdout
    assert run_ok(b, "show", "a").returncode == 0
    _uet_fsck(b)


def test_status_remote_reads_ref_names_without_a_clone(tmp_path: Path):
    a, b, _flag, run_id = _quarantined_run(tmp_path)
    run_ok(a, "push")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run_ok(elsewhere, "status", "--remote", b.as_uri(), run_id[:12]).stdout
    assert out.splitlines() == [f"run {run_id} in {b.as_uri()}", "a  quarantined",
                                "c  committed"]
