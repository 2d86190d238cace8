"""`uet retry` on a real run: a new attempt for a quarantined workstream unblocks its
dependents; `--reapply` re-integrates the same patch and re-verifies it (a retry after a tool
failure, no patch at all: tests/e2e/test_land_cli.py)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    fsck_clean,
    landed_workstreams,
    last_run,
    ledger_subjects,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
    trailers,
)


def test_retry_new_attempt_then_dependents_run(tmp_path: Path):
    flag = shared_dir(tmp_path) / "flag"
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(flag.parent), workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": [f"test -f {flag}"]},
        "b": {"depends_on": ["a", "c"], "command": "echo b > b.txt"},
        "c": {"command": "echo c > c.txt"},
    })
    run_ok(repo, "run", code=1)
    run_id = last_run(repo)
    assert states(repo) == {"a": "quarantined", "b": "blocked", "c": "committed"}
    flag.touch()
    run_ok(repo, "retry", "a")
    assert states(repo, run_id) == {"a": "committed", "b": "committed", "c": "committed"}
    assert landed_workstreams(repo) == ["c", "a", "b"]
    assert trailers(repo, "main~1")["Uet-Attempt"] == "2"
    assert git(repo, "rev-parse", f"refs/uet/patches/{run_id}/a/1") != git(
        repo, "rev-parse", f"refs/uet/patches/{run_id}/a/2")
    fsck_clean(repo)


def test_reapply_reverifies_the_same_patch(tmp_path: Path):
    flag = shared_dir(tmp_path) / "flag"
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(flag.parent), workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": [f"test -f {flag}"]},
    })
    run_ok(repo, "run", code=1)
    run_id = last_run(repo)
    patch = git(repo, "rev-parse", f"refs/uet/patches/{run_id}/a/1")
    # Without the fix, re-applying the same patch fails its acceptance again on the candidate.
    run_ok(repo, "retry", "a", "--reapply", code=1)
    assert states(repo, run_id) == {"a": "quarantined"}
    flag.touch()
    run_ok(repo, "retry", "a", "--reapply", "--run", run_id)
    assert states(repo, run_id) == {"a": "committed"}
    assert git(repo, "rev-parse", "main") == patch  # the same patch commit landed
    assert git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/patches/{run_id}/") \
        == f"refs/uet/patches/{run_id}/a/1"  # and no new attempt was made
    assert "a: quarantined -> queued" in ledger_subjects(repo, run_id)
    assert (repo / "a.txt").read_text() == "a\n"
    fsck_clean(repo)
