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
        cands = [i.candidate for i in q.items]
        assert [i.parent for i in q.items] == [k.ledger.base, cands[0], cands[1]]
        assert sorted(_candidate_refs(k).values()) == sorted(cands)  # type: ignore[arg-type]
        assert all(k.state(ws) == "queued" for ws in "abc")  # speculation is not a state
        spans = drain(q, [])
        # a's candidate is its patch (nothing to run again); b and c differ from their patch
        # trees: judged again, at the same time.
        long = sorted(spans, key=lambda sp: sp[1] - sp[0])[-2:]
        assert len(spans) == 3 and min(e for _, e in long) > max(s for s, _ in long)
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3
        assert k.ledger.integration_tip() == cands[2]
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
        assert [i.status for i in q.items] == ["built", "built", "deferred"]
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
