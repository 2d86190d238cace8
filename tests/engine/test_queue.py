"""The verification queue on a real repository and ledger, without the CLI: speculative
candidates chained and judged at once, the head committed, a failure flake-checked and
quarantined with the chain behind rebuilt, conflicts (with the tip: at once; with a speculative
candidate: deferred), and the verdict cache derived from the ledger."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.conftest import git
from tests.engine.verifykit import Kit, kit
from uet_git.engine.queue import Job, VerifyQueue, run_job
from uet_git.engine.verdicts import VerdictCache, acceptance_key, from_ledger
from uet_git.engine.verify import Verdict, checks_at
from uet_git.gitrepo import odb
from uet_git.ledger.fsck import fsck
from uet_git.ledger.log import read_ledger
from uet_git.spec.models import Config

SLOW = {"acceptance": ["sleep 0.2"]}
ON_CANDIDATES_FAILS = {"acceptance": ['test -z "$UET_CANDIDATE"']}


def _queue(k: Kit, window: int, cache: VerdictCache | None = None) -> VerifyQueue:
    checks = checks_at(k.repo, k.ledger.base, k.ctx.config)
    return VerifyQueue(k.ctx, checks, cache or VerdictCache(), window=window)


def _candidate_refs(k: Kit) -> dict[str, str]:
    out = git(k.path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/candidates/")
    return dict(line.split() for line in out.splitlines())


def drain(q: VerifyQueue, ids: list[str], *, slots: int = 8) -> list[tuple[float, float]]:
    """Feed ``ids`` and run the queue to the end, the judgings of one round in threads at
    once; returns each judging's (start, end)."""
    for ws in ids:
        q.add(ws)
    spans: list[tuple[float, float]] = []
    for _ in range(50):
        q.step()
        jobs = q.jobs(slots)
        if not jobs:
            if not q.items:
                return spans
            continue
        results: dict[Job, tuple[Verdict, float]] = {}

        def one(job: Job, results: dict[Job, tuple[Verdict, float]] = results) -> None:
            t0 = time.monotonic()
            results[job] = run_job(q.ctx, q.checks, q.cache, job, verifier=0)
            spans.append((t0, time.monotonic()))

        threads = [threading.Thread(target=one, args=(j,)) for j in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for job in jobs:
            q.finish(job, *results[job])
    raise AssertionError(f"the queue did not drain: {[(i.ws, i.status) for i in q.items]}")


def test_candidates_are_chained_judged_at_once_and_committed_in_order(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": SLOW, "b": SLOW, "c": SLOW}) as k:
        for ws in "abc":
            k.queue(ws, {f"{ws}.txt": ws})
        q = _queue(k, window=3)
        for ws in "abc":
            q.add(ws)
        q.step()
        # a's candidate is its patch (nothing to run again): it commits in that step, with
        # no thread and no candidate ref (changed when judging-free heads stopped taking a
        # verifier round trip); b and c differ from their patch trees: judged again.
        assert k.state("a") == "committed"
        cands = [i.candidate for i in q.items]
        assert [i.parent for i in q.items] == [k.ledger.integration_tip(), cands[0]]
        assert sorted(_candidate_refs(k).values()) == sorted(cands)  # type: ignore[arg-type]
        assert all(k.state(ws) == "queued" for ws in "bc")  # speculation is not a state
        spans = drain(q, [])
        # b and c judged at the same time.
        assert len(spans) == 2 and min(e for _, e in spans) > max(s for s, _ in spans)
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3
        assert k.ledger.integration_tip() == cands[1]
        assert _candidate_refs(k) == {}


def test_a_failing_candidate_is_flake_checked_quarantined_and_the_chain_rebuilt(
        tmp_path: Path) -> None:
    with kit(tmp_path, {"a": SLOW, "b": ON_CANDIDATES_FAILS, "c": SLOW}) as k:
        for ws in "abc":
            k.queue(ws, {f"{ws}.txt": ws})
        q = _queue(k, window=4)
        drain(q, list("abc"))
        assert [k.state(ws) for ws in "abc"] == ["committed", "quarantined", "committed"]
        rec = k.ledger.state("b")
        assert rec is not None and rec.reason == "verify-failed"
        # c was rebuilt without b: the integration history holds a and c only.
        log = git(k.path, "log", "--format=%(trailers:key=Uet-Workstream,valueonly)",
                  k.ledger.integration_tip()).split()
        assert log == ["c", "a"]
        subjects = git(k.path, "log", "--format=%s", f"refs/uet/ledger/{k.ledger.run}")
        assert "b: applied -> quarantined" in subjects
        assert "run: verdict c" in subjects  # c's first candidate, discarded: evidence
        assert _candidate_refs(k) == {}


def test_conflict_with_the_tip_quarantines_at_once_and_takes_no_slot(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": SLOW}, files={"x.txt": "1\n"}) as k:
        k.queue("a", {"x.txt": "a\n"})
        k.ledger.record("a", "applied", attempt=1, candidate=k.patches["a"])
        k.ledger.record("a", "verified", attempt=1)
        k.ledger.record("a", "committed", attempt=1, integration=k.patches["a"])
        k.queue("b", {"x.txt": "b\n"})
        q = _queue(k, window=4)
        q.add("b")
        progress = q.step()
        assert progress.quarantined == ["b"] and q.jobs(8) == []
        rec = k.ledger.state("b")
        assert rec is not None and rec.reason == "conflict"


def test_conflict_with_a_speculative_candidate_is_deferred_until_it_is_resolved(
        tmp_path: Path) -> None:
    # a fails on its candidate; b changes the same line: it conflicts with a's candidate
    # only, so it waits and then commits on the tip.
    with kit(tmp_path, {"z": SLOW, "a": ON_CANDIDATES_FAILS, "b": SLOW},
             files={"x.txt": "1\n"}) as k:
        k.queue("z", {"z.txt": "z"})
        k.queue("a", {"x.txt": "a\n"})
        k.queue("b", {"x.txt": "b\n"})
        q = _queue(k, window=4)
        for ws in "zab":
            q.add(ws)
        q.step()
        # z's candidate is its patch: committed in that step (nothing to run on it)
        assert k.state("z") == "committed"
        assert [i.status for i in q.items] == ["built", "deferred"]
        drain(q, [])
        assert [k.state(ws) for ws in "zab"] == ["committed", "quarantined", "committed"]
        assert git(k.path, "show", f"{k.ledger.integration_tip()}:x.txt") == "b"


def test_the_cache_answers_for_a_tree_judged_before_and_survives_in_the_ledger(
        tmp_path: Path) -> None:
    with kit(tmp_path, {"a": SLOW, "b": SLOW}) as k:
        k.queue("a", {"a.txt": "a"})
        k.queue("b", {"b.txt": "b"})
        q = _queue(k, window=4)
        drain(q, ["a", "b"])
        tree = odb.tree_of(k.repo, k.ledger.integration_tip())
        ws = k.ctx.ws("b")
        assert q.cache.passed("acceptance", tree, acceptance_key(ws))
        checks = checks_at(k.repo, k.ledger.base, Config())
        log = read_ledger(k.repo, k.ledger.run)
        again = from_ledger(k.repo, log.events, k.ctx.plan.workstreams, checks.base,
                            checks.hooks)
        assert again.passed("acceptance", tree, acceptance_key(ws))
        # Not for other acceptance commands.
        other = ws.model_copy(update={"acceptance": ["true"]})
        assert not again.passed("acceptance", tree, acceptance_key(other))


def test_fsck_checks_candidate_refs(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}}) as k:
        run = k.ledger.run
        patch = k.queue("a", {"a.txt": "a"})
        git(k.path, "update-ref", f"refs/uet/candidates/{run}/1", patch)
        assert fsck(k.repo, run) == []  # built on the integration tip (the base)
        stray = git(k.path, "commit-tree", "-m", "stray", f"{patch}^{{tree}}")
        git(k.path, "update-ref", f"refs/uet/candidates/{run}/2", stray)
        assert any("candidates/" in p and "not built on the integration history" in p
                   for p in fsck(k.repo, run))
        git(k.path, "update-ref", "-d", f"refs/uet/candidates/{run}/2")
        k.ledger.event("run: finish", "done")
        assert fsck(k.repo, run) == [
            f"{run}: refs/uet/candidates/{run}/1: speculative candidate left after the run "
            "finished"]


# -- interleavings, driven job by job (no threads unless said): which judging comes back when
# is chosen by the test, so each order the verifier threads can produce is checked exactly.

QUICK = {"acceptance": ["true"]}
NO_BOX = Config.model_validate({"sandbox": {"mode": "none"}})


def _fails_if(ctl: Path, name: str) -> dict[str, list[str]]:
    """Acceptance failing while ``ctl/name`` exists (the test switches it)."""
    return {"acceptance": [f"test ! -e {ctl / name}"]}


def _fails_once(ctl: Path, name: str) -> dict[str, list[str]]:
    """Acceptance failing the first time it runs with ``ctl/name`` present, then passing."""
    flag = ctl / name
    return {"acceptance": [f"test ! -e {flag} || {{ rm {flag}; exit 1; }}"]}


def _judge(q: VerifyQueue, job: Job) -> Verdict:
    verdict, _ = run_job(q.ctx, q.checks, q.cache, job, verifier=0)
    return verdict


def _round(q: VerifyQueue, order: list[str] | None = None, slots: int = 8) -> list[Job]:
    """One step, then every job it hands out judged and finished in ``order`` (ws ids; the
    rest after, in the order given)."""
    q.step()
    jobs = q.jobs(slots)
    verdicts = {j: _judge(q, j) for j in jobs}
    rank = {ws: n for n, ws in enumerate(order or [])}
    for job in sorted(jobs, key=lambda j: rank.get(j.ws, len(rank))):
        q.finish(job, verdicts[job], 0.1)
    return jobs


def _run_out(q: VerifyQueue) -> None:
    for _ in range(30):
        if not q.items:
            q.step()
            return
        _round(q)
    raise AssertionError(f"the queue did not drain: {[(i.ws, i.status) for i in q.items]}")


def _quarantines(k: Kit) -> list[str]:
    subjects = git(k.path, "log", "--format=%s", f"refs/uet/ledger/{k.ledger.run}")
    return [s.split(":")[0] for s in subjects.splitlines() if s.endswith("-> quarantined")]


def _history(k: Kit) -> list[str]:
    return git(k.path, "log", "--reverse", "--format=%(trailers:key=Uet-Workstream,valueonly)",
               f"{k.ledger.base}..{k.ledger.integration_tip()}").split()


def test_fail_at_the_head_is_flake_checked_then_quarantined_and_the_rest_commit(
        tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "a").touch()
    with kit(tmp_path, {"z": {}, "a": _fails_if(ctl, "a"), "b": QUICK, "c": QUICK},
             config=NO_BOX) as k:
        k.queue("z", {"z.txt": "z"})
        q = _queue(k, window=4)
        drain(q, ["z"])  # the tip moves: a's candidate is no longer its patch, it runs again
        for ws in "abc":
            k.queue(ws, {f"{ws}.txt": ws})
            q.add(ws)
        first = _round(q, order=["a", "b", "c"])
        assert [j.kind for j in first] == ["chain"] * 3
        # a failed at the head: a suspect, not a state; b and c were built on it: rebuilt
        # without it, their judgings stopped; the window halved.
        assert k.state("a") == "queued" and q.window == 2
        assert (q.items[0].ws, q.items[0].status) == ("a", "suspect")
        assert all(j.stop is not None and j.stop.is_set() for j in first if j.ws != "a")
        q.step()
        second = q.jobs(8)
        assert [(j.ws, j.kind) for j in second] == [("a", "flake"), ("b", "chain"),
                                                     ("c", "chain")]
        assert second[0].parent == k.ledger.integration_tip()  # alone on the tip
        for job in second:
            q.finish(job, _judge(q, job), 0.1)
        _run_out(q)
        assert [k.state(ws) for ws in "abc"] == ["quarantined", "committed", "committed"]
        assert _quarantines(k) == ["a"]
        rec = k.ledger.state("a")
        assert rec is not None and rec.reason == "verify-failed"
        assert _history(k) == ["z", "b", "c"]
        assert _candidate_refs(k) == {}


def test_fail_in_the_middle_caused_by_a_patch_ahead_never_quarantines_it(
        tmp_path: Path) -> None:
    """The issue's bug: b and c fail only on candidates holding bad.txt (bad's file); their
    failures come back before bad's. They are suspects, checked alone on the tip, and commit;
    only bad is quarantined."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "bad").touch()
    innocent = {"acceptance": ["test ! -e bad.txt"]}
    with kit(tmp_path, {"bad": _fails_if(ctl, "bad"), "b": innocent, "c": innocent,
                        "d": {}}, config=NO_BOX) as k:
        for ws in ("bad", "b", "c", "d"):
            k.queue(ws, {f"{ws}.txt": ws})
        # d commits first: bad's candidate is then not its patch, so its acceptance runs.
        q = _queue(k, window=4)
        drain(q, ["d"])
        for ws in ("bad", "b", "c"):
            q.add(ws)
        _round(q, order=["c", "b", "bad"])  # failures in the middle first, the head's last
        assert all(k.state(ws) == "queued" for ws in ("bad", "b", "c"))
        _run_out(q)
        assert {ws: k.state(ws) for ws in ("bad", "b", "c")} == {
            "bad": "quarantined", "b": "committed", "c": "committed"}
        assert _quarantines(k) == ["bad"]
        assert sorted(_history(k)[1:]) == ["b", "c"] and _history(k)[0] == "d"
        subjects = git(k.path, "log", "--format=%s", f"refs/uet/ledger/{k.ledger.run}")
        assert "run: verdict c failed" in subjects  # evidence of the speculative failure
        assert _candidate_refs(k) == {}
        assert fsck(k.repo, k.ledger.run) == []


def test_a_flaky_failure_passes_its_flake_check_and_commits_first(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "a").touch()
    with kit(tmp_path, {"z": {}, "a": _fails_once(ctl, "a"), "b": QUICK}, config=NO_BOX) as k:
        k.queue("z", {"z.txt": "z"})
        q = _queue(k, window=4)
        drain(q, ["z"])
        for ws in "ab":
            k.queue(ws, {f"{ws}.txt": ws})
            q.add(ws)
        _round(q, order=["a", "b"])  # a fails (once), b's candidate on it is discarded
        assert not (ctl / "a").exists()
        _run_out(q)
        assert [k.state(ws) for ws in "ab"] == ["committed", "committed"]
        assert _quarantines(k) == []
        assert _history(k) == ["z", "a", "b"]
        detail = git(k.path, "log", "-1", "--format=%b", "--grep=^a: applied -> verified",
                     f"refs/uet/ledger/{k.ledger.run}")
        assert "flake check" in detail
        assert _candidate_refs(k) == {}


def test_a_conflict_takes_no_slot_and_the_others_are_judged(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": QUICK, "c": QUICK}, files={"x.txt": "1\n"}) as k:
        k.queue("a", {"x.txt": "a\n"})
        q = _queue(k, window=4)
        drain(q, ["a"])
        k.queue("b", {"x.txt": "b\n"})  # made on the base: conflicts with the tip
        k.queue("c", {"c.txt": "c"})
        q.add("b")
        q.add("c")
        progress = q.step()
        assert progress.quarantined == ["b"]
        jobs = q.jobs(8)
        assert [j.ws for j in jobs] == ["c"] and q.running == 1
        for job in jobs:
            q.finish(job, _judge(q, job), 0.1)
        _run_out(q)
        assert (k.state("b"), k.state("c")) == ("quarantined", "committed")


def test_the_window_grows_by_one_per_commit_and_halves_on_a_failure(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "f").touch()
    ids = [f"p{i}" for i in range(10)]
    with kit(tmp_path, {"z": {}, "f": _fails_if(ctl, "f"), **{i: QUICK for i in ids}},
             config=NO_BOX) as k:
        k.queue("z", {"z.txt": "z"})
        q = _queue(k, window=2)
        q.max_window = 4
        drain(q, ["z"])
        assert q.window == 3  # one commit: 2 + 1
        k.queue("f", {"f.txt": "f"})
        q.add("f")
        _round(q)
        assert q.window == 1  # the failure halved it
        for ws in ids:
            k.queue(ws, {f"{ws}.txt": ws})
            q.add(ws)
        seen = []
        for _ in range(30):
            if not q.items:
                break
            q.step()
            seen.append(len(q.chain()))
            jobs = q.jobs(8)
            for job in jobs:
                q.finish(job, _judge(q, job), 0.1)
        assert seen[0] == 1 and max(seen) == 4  # grew back, never past 4
        assert q.window == 4
        assert k.state("f") == "quarantined"
        assert all(k.state(ws) == "committed" for ws in ids)


def test_two_judgings_of_one_workstream_may_overlap(tmp_path: Path) -> None:
    """A discarded candidate's judging (being stopped) and the new one's run at once for the
    same workstream: each has its own tamper-guard interval (the first to end closed the
    other's: an internal error quarantined the workstream)."""
    with kit(tmp_path, {"z": {}, "a": {"acceptance": ["sleep 0.3"]}}, config=NO_BOX) as k:
        k.queue("z", {"z.txt": "z"})
        q = _queue(k, window=4)
        drain(q, ["z"])
        k.queue("a", {"a.txt": "a"})
        q.add("a")
        q.step()
        (job,) = q.jobs(8)
        twin = Job(job.ws, job.gen + 1, "chain", job.attempt, job.patch, job.candidate,
                   job.parent)
        out: list[Verdict] = []
        threads = [threading.Thread(target=lambda j=j, v=v: out.append(
            run_job(q.ctx, q.checks, q.cache, j, verifier=v)[0]))
            for j, v in ((job, 0), (twin, 1))]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join()
        assert [v.outcome.value for v in out] == ["ok", "ok"]


def test_workers_judging_at_once_get_chained_tails_the_queue_then_makes(tmp_path: Path) -> None:
    """Verify once with tools that end together: each worker's tail holds the candidates
    handed to the workers before it, so the queue's chain is the trees they judged."""
    with kit(tmp_path, {"a": QUICK, "b": QUICK, "c": QUICK}) as k:
        patches = {ws: k.queue(ws, {f"{ws}.txt": ws}) for ws in "abc"}
        q = _queue(k, window=4)
        assert q.worker_tail(patches["a"]) is None  # on the tip: judged as it is
        tb = q.worker_tail(patches["b"])
        tc = q.worker_tail(patches["c"])
        assert tb is not None and tc is not None
        assert odb.get_commit(k.repo, tb).parent == patches["a"]
        assert odb.get_commit(k.repo, tc).parent == tb
        for ws, tail in (("b", tb), ("c", tc)):  # what the workers' passes put in the cache
            q.cache.add("acceptance", odb.tree_of(k.repo, tail), acceptance_key(k.ctx.ws(ws)))
        for ws in "abc":
            q.add(ws)
        q.step()
        # The queue's chain is the trees the workers judged: the cache answers for each, so
        # all three commit in that one step, nothing judged again.
        assert q.tail.handed == {} and q.items == [] and q.running == 0
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3
        assert odb.tree_of(k.repo, k.ledger.integration_tip()) == odb.tree_of(k.repo, tc)


def test_a_handed_tail_is_rebuilt_when_the_chain_moves(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": QUICK, "b": QUICK}) as k:
        pa = k.queue("a", {"a.txt": "a"})
        pb = k.queue("b", {"b.txt": "b"})
        q = _queue(k, window=4)
        q.worker_tail(pa)
        q.forget(pa)  # a's worker failed: b is no longer behind it
        q.publish_tail()
        assert q.worker_tail(pb) is None  # b is on the tip again


def test_a_patch_that_failed_on_its_tail_in_the_worker_waits_as_a_suspect(
        tmp_path: Path) -> None:
    """Its worker's run on the queue's tail failed (no pass in the cache for that tree) and it
    passed alone: it takes no slot to fail on the chain again; its flake check at the head
    decides."""
    with kit(tmp_path, {"a": QUICK, "b": QUICK, "c": QUICK}) as k:
        patches = {ws: k.queue(ws, {f"{ws}.txt": ws}) for ws in "abc"}
        q = _queue(k, window=4)
        q.worker_tail(patches["a"])
        tb = q.worker_tail(patches["b"])
        assert tb is not None
        for ws in "abc":
            q.add(ws)
        q.step()
        assert k.state("a") == "committed"  # its candidate is its patch: nothing to run
        assert [i.status for i in q.items] == ["suspect", "built"]
        jobs = q.jobs(8)
        # b at the head: its flake check alone on the tip; c built on a, without b
        assert [(j.ws, j.kind) for j in jobs] == [("b", "flake"), ("c", "chain")]
        for job in jobs:
            q.finish(job, _judge(q, job), 0.1)
        _run_out(q)
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3  # b passed its flake check


def test_a_worker_acceptance_that_fails_takes_its_patch_out_of_the_handed_tail(
        tmp_path: Path) -> None:
    """b's worker judged b on a's tail and failed there (the worker reports it through the
    observer, then runs b alone): c, whose tool ends while b runs alone, gets a tail without
    b, which is the tree the queue makes for c once b arrives as a suspect, so c's worker
    pass answers for c's candidate and nothing is judged again."""
    with kit(tmp_path, {"a": QUICK, "b": QUICK, "c": QUICK}) as k:
        patches = {ws: k.queue(ws, {f"{ws}.txt": ws}) for ws in "abc"}
        q = _queue(k, window=4)
        q.worker_tail(patches["a"])
        tb = q.worker_tail(patches["b"])
        assert tb is not None
        k.ctx.observer.step_finished("b", 1, "acceptance", ok=False)  # as the worker path does
        tc = q.worker_tail(patches["c"])
        assert tc is not None and odb.get_commit(k.repo, tc).parent == patches["a"]
        assert "b.txt" not in git(k.path, "ls-tree", "--name-only", tc).split()
        q.cache.add("acceptance", odb.tree_of(k.repo, tc), acceptance_key(k.ctx.ws("c")))
        for ws in "abc":
            q.add(ws)
        q.step()
        assert k.state("a") == "committed"
        assert [(i.ws, i.status) for i in q.items] == [("b", "suspect"), ("c", "passed")]
        # A verifier's failure (a candidate on the chain) is not a worker's: no tail change.
        k.ctx.observer.step_finished("c", -1, "acceptance", ok=False)
        assert [(i.ws, i.status) for i in q.items] == [("b", "suspect"), ("c", "passed")]
        jobs = q.jobs(8)
        assert [(j.ws, j.kind) for j in jobs] == [("b", "flake")]  # c: nothing to judge
        for job in jobs:
            q.finish(job, _judge(q, job), 0.1)
        _run_out(q)
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3
