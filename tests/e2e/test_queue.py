"""The verification queue through `uet run`: speculative candidates judged in parallel
(``[verify] window``), a failing patch quarantined after its flake check, a flaky one committed
after it, and a resume after kill -9 in the middle of a window."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    landed_workstreams,
    last_run,
    loose_refs,
    run_ok,
    setup_repo,
    states,
)
from tests.e2e.started import start_uet, wait_until

N = 8


def _repo(path: Path, *, window: int | None, acceptance: str | None = "sleep 0.5",
          extra: dict[str, dict[str, object]] | None = None, n: int = N,
          hook: str | None = None) -> Path:
    wss: dict[str, dict[str, object]] = {
        f"w{i}": {"command": f"echo {i} > f{i}.txt",
                  "acceptance": [acceptance] if acceptance else []}
        for i in range(n)
    }
    wss.update(extra or {})
    hooks = f"[hooks]\npre-merge = [{hook!r}]\n" if hook else ""
    verify = "" if window is None else f"[verify]\nwindow = {window}\n"  # None: the default
    return setup_repo(path, workstreams=wss, config=f"[run]\njobs = 4\n{verify}{hooks}"
                                                    + NO_SANDBOX)


def _verify_intervals(repo: Path) -> list[tuple[float, float]]:
    """(start, end) of each judging on the queue, from the `verified` transitions' trailers."""
    run_id = last_run(repo)
    out = []
    # Every ledger commit's trailers from one `git log` (each record ends with a NUL): what
    # `trailers(repo, oid)` reads with one `git log -1` per commit of `git rev-list`.
    log = git(repo, "log", "-z", "--format=%(trailers:only,unfold)", f"refs/uet/ledger/{run_id}")
    for record in log.split("\0"):
        t = dict(line.partition(": ")[::2] for line in record.splitlines() if ": " in line)
        if t.get("Uet-To") == "verified" and "Uet-Verify-Start" in t:
            start = float(t["Uet-Verify-Start"])
            out.append((start, start + float(t["Uet-Verify-Seconds"])))
    return out


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    """How many pairs of intervals overlap in time (by more than 50 ms)."""
    n = 0
    for i, (a0, a1) in enumerate(intervals):
        for b0, b1 in intervals[i + 1:]:
            if min(a1, b1) - max(a0, b0) > 0.05:
                n += 1
    return n


def test_window_4_judges_candidates_in_parallel_window_1_one_at_a_time(tmp_path: Path) -> None:
    """Window 4: at least two of the queue's judgings overlap in time. The wall-time ratio
    against window 1 is printed with UET_QUEUE_RATIO=1 (``pytest -s``): the window-1 run alone
    takes about 6 s, over the suite's budget for one test."""
    times = {}
    for window in (1, 4) if os.environ.get("UET_QUEUE_RATIO") else (4,):
        # The pre-merge hook runs on every candidate (a worker never runs it): the queue's
        # judgings take time whatever the worker's acceptance on the queue's tail saved.
        repo = _repo(tmp_path / f"w{window}", window=window, hook="sleep 0.2")
        t0 = time.monotonic()
        run_ok(repo, "run")
        times[window] = time.monotonic() - t0
        assert sorted(landed_workstreams(repo)) == sorted(f"w{i}" for i in range(N))
        assert set(states(repo).values()) == {"committed"}
        if window == 4:
            assert _overlaps(_verify_intervals(repo)) >= 2
            assert not git(repo, "for-each-ref", "refs/uet/candidates/")
            fsck_clean(repo)
    if 1 in times:
        print(f"\nwall time window 1 / window 4: {times[1]:.2f} s / {times[4]:.2f} s = "
              f"{times[1] / times[4]:.2f}x")


def test_failing_patches_quarantined_verify_failed_others_committed(tmp_path: Path) -> None:
    # 1 in 4 fails on any tree that holds w0's file: alone, on the base, it passes; its tool
    # waits until w0 is queued (or further), so w0 is ahead of it in the queue whatever the
    # machine's load (a sleep was not enough on a loaded machine: w1 could overtake w0).
    ahead = ("until git for-each-ref refs/uet/queued/ refs/uet/applied/ refs/uet/verified/ "
             "refs/uet/committed/ | grep -q '/w0$'; do sleep 0.05; done")
    bad = {f"w{i}": {"command": f"{ahead}; echo {i} > f{i}.txt",
                     "acceptance": ["test ! -e f0.txt"]} for i in (1, 2)}
    repo = _repo(tmp_path / "r", window=4, acceptance="sleep 0.2", extra=bad)
    run_ok(repo, "run", code=1)
    st = states(repo)
    assert (st.pop("w1"), st.pop("w2")) == ("quarantined", "quarantined")
    assert set(st.values()) == {"committed"}
    run_id = last_run(repo)
    for ws in ("w1", "w2"):
        reason = git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
                     f"--grep=^{ws}: .* -> quarantined", f"refs/uet/ledger/{run_id}")
        assert reason.strip() == "verify-failed"
    landed = landed_workstreams(repo)
    assert sorted(landed) == sorted(f"w{i}" for i in range(N) if i not in (1, 2))
    fsck_clean(repo)


def test_flaky_patch_committed_after_the_flake_check(tmp_path: Path) -> None:
    # w1 fails the first time it is judged on a tree holding w0's file, then passes. Where that
    # first run is: the worker's run on the queue's tail (then its patch alone decides) or the
    # queue's candidate (then the flake check on the tip decides); either way it lands.
    marker = tmp_path / "failed-once"
    flaky = {"w1": {"command": "sleep 0.5; echo 1 > f1.txt", "acceptance": [
        f"test ! -e f0.txt || test -e {marker} || {{ touch {marker}; exit 1; }}"]}}
    repo = _repo(tmp_path / "r", window=4, acceptance="sleep 0.1", extra=flaky, n=4)
    run_ok(repo, "run")
    assert marker.exists()
    assert set(states(repo).values()) == {"committed"}
    assert sorted(landed_workstreams(repo)) == [f"w{i}" for i in range(4)]
    fsck_clean(repo)


@pytest.mark.parametrize("window", [4, None], ids=["window-4", "default-window"])
def test_resume_after_kill_9_in_a_speculative_window_lands_each_patch_once(
        tmp_path: Path, window: int | None) -> None:
    repo = _repo(tmp_path / "r", window=window, acceptance=None, hook="sleep 0.5")
    # Killed once candidates are in flight; the wait reads the loose refs uet writes (no git
    # process every 20 ms: packed ones would only make it time out, never pass).
    with start_uet(repo, "run", "--land", "never", new_session=True) as proc:
        wait_until(lambda: loose_refs(repo, "refs/uet/candidates") >= 3,
                   "a speculative window", timeout=20, started=proc)
        proc.kill()  # the whole process group, as kill -9 of the group
    run_ok(repo, "resume")
    assert not git(repo, "for-each-ref", "refs/uet/candidates/")
    assert set(states(repo).values()) == {"committed"}
    landed = landed_workstreams(repo, f"refs/uet/integration/{last_run(repo)}")
    assert sorted(landed) == sorted(f"w{i}" for i in range(N))  # each once
    fsck_clean(repo)


def test_predicted_conflict_serialised_both_commit_ignored_one_conflicts(
        tmp_path: Path) -> None:
    wss: dict[str, dict[str, object]] = {
        side: {"command": f"printf '{side.upper()}\\nline two\\n' > shared.txt",
               "scope": {"allow": ["shared.txt"]}}
        for side in ("left", "right")
    }
    for mode, codes in (("serialise", 0), ("ignore", 1)):
        repo = setup_repo(tmp_path / mode, files={"shared.txt": "line one\nline two\n"},
                          workstreams=wss,
                          config=f'[run]\njobs = 2\npredicted_conflicts = "{mode}"\n')
        plan = run_ok(repo, "plan")
        assert "left -> right (both may change shared.txt)" in plan.stdout
        run_ok(repo, "run", code=codes)
        st = states(repo)
        if mode == "serialise":  # right started from left's commit
            assert st == {"left": "committed", "right": "committed"}
            assert git(repo, "show", "main:shared.txt").splitlines()[0] == "RIGHT"
        else:
            assert sorted(st.values()) == ["committed", "quarantined"]
        fsck_clean(repo)
