"""``[verify] batch = K`` through `uet run`: K patches judged once as one candidate, a failing
batch bisected with only the bad patch quarantined, and a resume after kill -9 inside a batch
(while it is judged, and between its patches' commits) landing each patch once."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    json_lines,
    landed_workstreams,
    last_run,
    loose_refs,
    run,
    run_ok,
    setup_repo,
    states,
)
from tests.e2e.started import start_uet, wait_until

N = 4


def _repo(path: Path, ctl: Path, *, hook: str, batch: int = N) -> Path:
    """N workstreams whose tools end together (each waits until all N started), so their
    patches reach the queue within one acceptance of each other; the pre-merge hook runs on
    every candidate the queue judges (a worker never runs it)."""
    ctl.mkdir(exist_ok=True)
    # The files in ctl counted by the shell's own glob (`set --`), not by `ls | wc -l`: two
    # processes fewer each time round the loop.
    together = f"touch {ctl}/$UET_WORKSTREAM; " \
               f"until set -- {ctl}/*; [ $# -ge {N} ]; do sleep 0.02; done"
    wss = {f"w{i}": {"command": f"{together}; echo {i} > f{i}.txt",
                     "acceptance": ["sleep 0.5"]} for i in range(N)}
    config = f"[run]\njobs = {N}\n[verify]\nbatch = {batch}\n" \
             f"[hooks]\npre-merge = [{hook!r}]\n" + NO_SANDBOX
    return setup_repo(path, workstreams=wss, config=config)


def _verifications(stdout: str) -> int:
    return sum(1 for e in json_lines(stdout) if e.get("event") == "verify-started")


def test_a_batch_judges_k_patches_once_and_lands_each(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", tmp_path / "ctl", hook="true")
    proc = run_ok(repo, "run", "--json")
    assert _verifications(proc.stdout) == 1
    assert set(states(repo).values()) == {"committed"}
    assert sorted(landed_workstreams(repo)) == [f"w{i}" for i in range(N)]
    assert not git(repo, "for-each-ref", "refs/uet/candidates/")
    fsck_clean(repo)


def test_a_failing_batch_is_bisected_and_only_the_bad_patch_quarantined(
        tmp_path: Path) -> None:
    # The hook fails on any candidate holding w2's file: the batch fails, the bisection finds
    # w2 (whichever place it took in the queue), its flake check alone on the tip fails.
    repo = _repo(tmp_path / "r", tmp_path / "ctl", hook="test ! -e f2.txt")
    proc = run_ok(repo, "run", "--json", code=1)
    st = states(repo)
    assert st.pop("w2") == "quarantined"
    assert set(st.values()) == {"committed"}
    reason = git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
                 "--grep=^w2: .* -> quarantined", f"refs/uet/ledger/{last_run(repo)}")
    assert reason.strip() == "hook-failed"
    assert _verifications(proc.stdout) >= 3  # the batch, a part of it, w2 alone
    assert sorted(landed_workstreams(repo)) == ["w0", "w1", "w3"]
    fsck_clean(repo)


def _resumed_lands_each_once(repo: Path) -> None:
    run_ok(repo, "resume")
    assert not git(repo, "for-each-ref", "refs/uet/candidates/")
    assert set(states(repo).values()) == {"committed"}
    landed = landed_workstreams(repo, f"refs/uet/integration/{last_run(repo)}")
    assert sorted(landed) == [f"w{i}" for i in range(N)]  # each once
    fsck_clean(repo)


def test_resume_after_kill_9_while_a_batch_is_judged_lands_each_patch_once(
        tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", tmp_path / "ctl", hook="sleep 0.6")
    with start_uet(repo, "run", "--land", "never", new_session=True) as proc:
        # The batch's candidates are made: it is judged (loose refs read, as in test_queue).
        wait_until(lambda: loose_refs(repo, "refs/uet/candidates") >= N,
                   "a batch judged", timeout=30, started=proc)
        time.sleep(0.1)
        proc.kill()
    _resumed_lands_each_once(repo)


def test_resume_after_a_crash_between_a_batchs_commits_judges_nothing_again(
        tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", tmp_path / "ctl", hook="true")
    # The process dies right after the first patch of the batch is recorded committed.
    crash = ",".join(f"w{i}:committed" for i in range(N))
    proc = run(repo, "run", "--land", "never", env={"UET_TEST_CRASH_AT": crash})
    assert proc.returncode == 137
    assert sorted(states(repo).values()).count("committed") == 1
    resumed = run_ok(repo, "resume", "--json")
    assert _verifications(resumed.stdout) == 0  # the batch's pass is in the ledger
    _resumed_lands_each_once(repo)
