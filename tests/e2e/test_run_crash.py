"""kill -9 of `uet run` at many points, then `uet resume`: every workstream ends committed or
quarantined, each patch lands once, git fsck and uet fsck stay clean."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    landed_workstreams,
    last_run,
    ledger_subjects,
    run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
    tool,
)
from tests.e2e.started import start_uet, wait_until


def _chain_repo(path: Path) -> Path:
    return setup_repo(path, workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": ["test -f a.txt"]},
        "b": {"depends_on": ["a"], "command": [tool("needs_file.sh"), "a.txt", "b.txt"]},
        "c": {"command": "echo c > c.txt"},
        "bad": {"command": "echo x > x.txt", "acceptance": ["false"]},
        "after-bad": {"depends_on": ["bad"], "command": "echo y > y.txt"},
    })


EXPECTED = {"a": "committed", "b": "committed", "c": "committed", "bad": "quarantined",
            "after-bad": "blocked"}


ENGINE_POINTS = ["a:tool-done", "a:created", "a:validated", "a:queued", "a:applied",
                 "a:verified", "a:committed", "b:created", "bad:quarantined", "land"]
# Inside a ledger transaction (the ledger's own fault points): objects written but no ref
# moved, or the ref transaction prepared but not committed.
LEDGER_POINTS = ["after-objects:a", "after-prepare:b", "after-commit:a"]


@pytest.mark.parametrize(("var", "point"), [("UET_TEST_CRASH_AT", p) for p in ENGINE_POINTS]
                         + [("UET_LEDGER_CRASH", p) for p in LEDGER_POINTS])
def test_crash_at_a_transition_then_resume(tmp_path: Path, var: str, point: str):
    repo = _chain_repo(tmp_path / "r")
    proc = run(repo, "run", "--jobs", "2", env={var: point})
    assert proc.returncode in (137, 99), proc.stdout + proc.stderr
    run_id = last_run(repo)
    assert "run: finish" not in ledger_subjects(repo, run_id)
    res = run_ok(repo, "resume", code=1)
    assert states(repo, run_id) == EXPECTED, res.stdout
    landed = landed_workstreams(repo)
    assert sorted(landed) == ["a", "b", "c"] and landed.index("a") < landed.index("b")
    assert len(landed) == len(set(landed))
    # One rev-parse for both names (a line each, in order).
    head, tip = git(repo, "rev-parse", "main", f"refs/uet/integration/{run_id}").split()
    assert head == tip
    subjects = ledger_subjects(repo, run_id)
    assert "run: resume" in subjects and subjects[-1] == "run: finish"
    # Nothing recorded twice: each workstream entered each state at most once.
    for ws in ("a", "b", "c"):
        assert sum(s.startswith(f"{ws}: ") and s.endswith("-> committed") for s in subjects) == 1
    fsck_clean(repo)
    # A second resume has nothing left to do and lands nothing again (main is still `head`:
    # fsck_clean's checks move no ref).
    run_ok(repo, "resume", code=1)
    assert git(repo, "rev-parse", "main") == head


def test_real_sigkill_while_a_tool_sleeps_then_resume(tmp_path: Path):
    marker, go = tmp_path / "started", tmp_path / "go"
    # Sleeps only in the killed run (long enough for resume to find it still running); the
    # resumed attempt, started once `go` exists, goes straight on.
    slow = (f"echo partial > partial.txt; touch {marker}; [ -f {go} ] || sleep 10; "
            "echo slow > slow.txt")
    repo = setup_repo(tmp_path / "r", config=NO_SANDBOX, workstreams={
        "fast": {"command": "echo f > f.txt"},
        "slow": {"command": slow},
        "after": {"depends_on": ["slow"], "command": "echo a > after.txt"},
    })
    with start_uet(repo, "run", "--jobs", "2") as proc:
        wait_until(marker.exists, "the slow tool started", started=proc)
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    run_id = last_run(repo)
    marker.unlink()
    go.touch()
    res = run_ok(repo, "resume")
    # The killed run's tool (in its own session) was still sleeping: resume stopped it.
    assert "tool processes left running by the interrupted run" in res.stdout
    assert states(repo, run_id) == {"fast": "committed", "slow": "committed",
                                    "after": "committed"}, res.stdout
    landed = landed_workstreams(repo)
    assert sorted(landed) == ["after", "fast", "slow"]
    assert marker.exists()  # the slow tool ran again: its first run was never recorded
    # The killed attempt's worktree held an unrecorded change: snapshotted into the ledger.
    subjects = ledger_subjects(repo, run_id)
    assert "run: orphan" in subjects
    names = git(repo, "ls-tree", "--name-only", f"refs/uet/ledger/{run_id}:run/").splitlines()
    # (One per worktree left with changes: `fast` may not have been recorded yet either.)
    diffs = [git(repo, "show", f"refs/uet/ledger/{run_id}:run/{n}")
             for n in names if n.startswith("orphan-")]
    assert any("+partial" in d for d in diffs), diffs
    fsck_clean(repo)


def test_sigint_leaves_a_resumable_run_and_exits_130(tmp_path: Path):
    marker = shared_dir(tmp_path) / "started"
    fast = marker.parent / "fast"
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(marker.parent), workstreams={
        "slow": {"command": f"[ -f {fast} ] || {{ touch {marker}; sleep 30; }}; echo s > s.txt"},
        "later": {"depends_on": ["slow"], "command": "echo l > l.txt"},
    })
    with start_uet(repo, "run") as proc:
        wait_until(marker.exists, "the slow tool started", started=proc)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        out, err = proc.output()
    assert proc.returncode == 130, out + err
    assert time.monotonic() - t0 < 15
    run_id = last_run(repo)
    assert "run: interrupted" in ledger_subjects(repo, run_id)
    assert states(repo, run_id) == {}
    assert f"uet resume {run_id}" in out
    fast.touch()
    run_ok(repo, "resume")
    assert states(repo, run_id) == {"slow": "committed", "later": "committed"}
    assert landed_workstreams(repo) == ["slow", "later"]
    fsck_clean(repo)


def test_crash_during_resume_then_resume_again(tmp_path: Path):
    repo = _chain_repo(tmp_path / "r")
    assert run(repo, "run", env={"UET_TEST_CRASH_AT": "a:queued"}).returncode == 137
    run_id = last_run(repo)
    assert run(repo, "resume", env={"UET_TEST_CRASH_AT": "b:validated"}).returncode == 137
    run_ok(repo, "resume", code=1)
    assert states(repo, run_id) == EXPECTED
    landed = landed_workstreams(repo)
    assert sorted(landed) == ["a", "b", "c"] and len(landed) == 3
    assert ledger_subjects(repo, run_id).count("run: resume") == 2
    fsck_clean(repo)
