"""The integrator of ``[verify] window = 1`` (the verification queue, ``engine/queue.py``,
takes its place otherwise): one patch at a time onto the integration tip, as a walk through the
states ``queued -> applied -> verified -> committed`` (any of them can be where a resumed run
stands).

- ``queued``: the candidate is made (``verify.make_candidate``: the patch's change onto the tip,
  in memory, message and author kept) -> ``applied``; a conflict -> ``quarantined`` (``conflict``,
  with the paths). A change the tip already holds gives an empty candidate.
- ``applied``: the candidate is judged (``verify.verify_candidate``: acceptance when its tree is
  not the verified one, the base's pre-merge hooks always) -> ``verified`` or ``quarantined``
  (``verify-failed``/``hook-failed``, or ``tampered`` when they changed the repository outside
  the worktree); cancelled -> nothing recorded.
- ``verified`` -> ``committed``, with the integration ref fast-forwarded in the same ledger
  transaction.
Transitions decided together go in one ledger transaction (``ctx.record_chain``, one ledger
commit each): ``verified -> committed`` after a judging; ``applied -> verified -> committed``
when judging the candidate runs nothing (``verify.quick_verdict``: its tree is the verified
patch tree and there are no hooks, or nothing is due), which is every patch of a run without
acceptance or hooks.
A candidate recorded ``applied``/``verified`` whose parent is no longer the tip goes back to
``queued`` first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from uet_git.engine.context import RunContext
from uet_git.engine.verify import (
    INTEGRATOR,
    Bench,
    Candidate,
    Checks,
    Outcome,
    Verdict,
    checks_at,
    checks_due,
    empty_candidate,
    make_candidate,
    quick_verdict,
    verify_candidate,
)
from uet_git.gitrepo import odb
from uet_git.gitrepo.merge import rebase_conflict_text as conflict_evidence
from uet_git.ledger.writer import Step


@dataclass
class IntegrationOutcome:
    ws: str
    state: str | None  # "committed", "quarantined", or None (cancelled: nothing more recorded)
    reason: str | None = None
    tip: str = ""
    duration: float = 0.0


def integrate(ctx: RunContext, ws_id: str) -> IntegrationOutcome:
    """Take ``ws_id`` from its recorded state to ``committed`` or ``quarantined``."""
    start = time.monotonic()
    rec = ctx.ledger.state(ws_id)
    assert rec is not None and rec.patch is not None and rec.attempt is not None
    attempt, patch, state = rec.attempt, rec.patch, rec.state
    tip = ctx.ledger.integration_tip()
    candidate = rec.candidate

    def done(state: str | None, reason: str | None = None) -> IntegrationOutcome:
        return IntegrationOutcome(ws_id, state, reason, ctx.ledger.integration_tip(),
                                  time.monotonic() - start)

    if state in ("applied", "verified"):
        assert candidate is not None
        parents = odb.get_commit(ctx.repo, candidate, what=f"candidate of {ws_id}").parents
        if tip not in parents and candidate != tip:
            ctx.record(ws_id, "queued", attempt=attempt,
                       detail=f"the integration tip moved to {tip[:12]} since the candidate "
                              f"{candidate[:12]} was made: re-apply")
            state = "queued"

    # The base's checks, read once for the quick verdict and the judging; and what judging a
    # candidate made here has to run, looked at once for both.
    checks = _checks(ctx) if state in ("queued", "applied") else None
    due = None

    if state == "queued":
        assert checks is not None
        ctx.observer.worker(INTEGRATOR, ws_id, "merge")
        made = make_candidate(ctx.repo, patch, tip)
        if made.conflicts:
            conflicts = sorted(made.conflicts)
            shown = ", ".join(conflicts[:20]) + (" ..." if len(conflicts) > 20 else "")
            ctx.record(ws_id, "quarantined", attempt=attempt, reason="conflict",
                       detail=f"conflicts with the integration tip {tip[:12]} in: {shown}",
                       evidence={"conflicts.txt": ("\n".join(conflicts) + "\n").encode(),
                                 "conflicts.diff3": conflict_evidence(ctx.repo, patch, tip)})
            ctx.observer.worker(INTEGRATOR, None)
            return done("quarantined", "conflict")
        candidate = made.commit or empty_candidate(ctx.repo, patch, tip)
        applied = Step("applied", candidate=candidate,
                       summary=f"candidate {candidate[:12]} = {tip[:12]} + patch {patch[:12]}")
        cand = Candidate(ctx.ws(ws_id), attempt, patch, candidate, tip, verified=patch)
        due = checks_due(ctx.repo, cand, checks, None, force=ws_id in ctx.reverify)
        quick = quick_verdict(ctx.repo, cand, checks, None, due=due)
        if quick is not None:  # nothing to run: decided now, one transaction
            ctx.observer.worker(INTEGRATOR, None)
            ctx.record_chain(ws_id, [applied, *_verified_committed(ctx, quick, candidate)],
                             attempt=attempt)
            return done("committed")
        ctx.record_chain(ws_id, [applied], attempt=attempt)
        state = "applied"

    assert candidate is not None
    if state == "applied":
        bench = Bench(ctx.run_id, ctx.target, ctx.pool, ctx.observer, ctx.cancel, ctx.guard,
                      remote=ctx.executor)
        cand = Candidate(ctx.ws(ws_id), attempt, patch, candidate, tip, verified=patch)
        assert checks is not None
        verdict = verify_candidate(ctx.repo, cand, checks, bench,
                                   log_dir=ctx.log_dir(ws_id, attempt, "candidate"),
                                   label=f"{ctx.run_id}/{ws_id}/{attempt}/candidate",
                                   force=ws_id in ctx.reverify, due=due)
        ctx.observer.worker(INTEGRATOR, None)
        if verdict.outcome is Outcome.CANCELLED:
            return done(None)
        if verdict.outcome is Outcome.FAILED:
            ctx.record(ws_id, "quarantined", attempt=attempt, reason=verdict.reason,
                       detail=verdict.detail, evidence=verdict.evidence)
            return done("quarantined", verdict.reason)
        ctx.record_chain(ws_id, _verified_committed(ctx, verdict, candidate), attempt=attempt)
        return done("committed")

    if state == "verified":  # a resumed run: recorded verified, on the tip
        ctx.record(ws_id, "committed", attempt=attempt, integration=candidate,
                   detail=f"integration/{ctx.run_id} fast-forwarded to {candidate[:12]}")
    return done("committed")


def _checks(ctx: RunContext) -> Checks:
    return checks_at(ctx.repo, ctx.ledger.base, ctx.config)


def _verified_committed(ctx: RunContext, verdict: Verdict, candidate: str) -> list[Step]:
    return [Step("verified", summary=verdict.detail, evidence=verdict.evidence,
                 trailers=verdict.trailers or None),
            Step("committed", integration=candidate,
                 summary=f"integration/{ctx.run_id} fast-forwarded to {candidate[:12]}")]
