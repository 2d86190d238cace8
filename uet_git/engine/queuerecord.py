"""What the verification queue (``engine/queue.py``) writes to the ledger: the transitions of
a patch whose candidate reaches the head (``[queued ->] applied -> verified -> committed``, one
transaction), of one quarantined on a conflict, and the ``run: verdict`` events that keep a
verdict on a speculative or discarded candidate as evidence (``engine/verdicts``).
"""

from __future__ import annotations

from uet_git.engine.candidates import Item, Job
from uet_git.engine.context import RunContext
from uet_git.engine.verdicts import VERDICT_EVENT, acceptance_key, hooks_key, verdict_trailers
from uet_git.engine.verify import Checks, Outcome, Verdict
from uet_git.gitrepo import odb
from uet_git.gitrepo.merge import rebase_conflict_text as conflict_evidence
from uet_git.ledger.writer import Step

VERIFY_START = "Uet-Verify-Start"  # trailers of `verified`: when the judging started (epoch s)
VERIFY_SECONDS = "Uet-Verify-Seconds"
APPLIED = ("applied", "verified")


def applied_steps(ctx: RunContext, item: Item, candidate: str, parent: str
                  ) -> tuple[list[Step], str]:
    """The steps that make ``candidate`` (``parent`` + ``item``'s patch) the one the ledger
    holds for ``item``, and the state it is in after them: none when it holds it already; a
    stale recorded candidate goes back to ``queued`` first, as the integrator does."""
    if item.fresh:  # queued, nothing recorded since: no need to wait for that write
        state, recorded = "queued", None
    else:
        rec = ctx.ledger.state(item.ws)
        assert rec is not None
        state, recorded = rec.state, rec.candidate
    if state in APPLIED and recorded == candidate:
        return [], state
    steps: list[Step] = []
    if state in APPLIED:
        steps.append(Step("queued", summary=f"the queue made a new candidate on "
                                            f"{parent[:12]}: re-apply"))
    steps.append(Step("applied", candidate=candidate,
                      summary=f"candidate {candidate[:12]} = {parent[:12]} + patch "
                              f"{item.patch[:12]}"))
    return steps, "applied"


def record_applied(ctx: RunContext, item: Item, candidate: str, parent: str) -> None:
    """Record ``applied`` with ``candidate`` (see ``applied_steps``)."""
    steps, _ = applied_steps(ctx, item, candidate, parent)
    if steps:
        ctx.record_chain(item.ws, steps, attempt=item.attempt)
        item.recorded, item.fresh = candidate, False


def record_commit(ctx: RunContext, item: Item) -> None:
    """``item``'s passed candidate, on the integration tip, committed: the integration ref
    fast-forwards to it in the same transaction."""
    assert item.candidate is not None and item.parent is not None
    verdict = item.verdict or Verdict(Outcome.OK)
    # The gate: only a candidate that passed and whose parent is the current tip.
    if item.parent != ctx.ledger.integration_tip():
        raise AssertionError(f"{item.ws}: candidate {item.candidate[:12]} is not on the "
                             "integration tip")
    # [queued ->] applied -> verified -> committed are decided here together: ONE ledger
    # transaction, each still its own ledger commit (ledger/writer.py says why a crash
    # cannot split or misstate them).
    steps, state = applied_steps(ctx, item, item.candidate, item.parent)
    if state == "applied":
        trailers = dict(verdict.trailers)
        if item.started:
            trailers[VERIFY_START] = f"{item.started:.3f}"
            trailers[VERIFY_SECONDS] = f"{item.seconds:.3f}"
        steps.append(Step("verified", summary=verdict.detail, evidence=verdict.evidence,
                          trailers=trailers or None))
    steps.append(Step("committed", integration=item.candidate,
                      summary=f"integration/{ctx.run_id} fast-forwarded to "
                              f"{item.candidate[:12]}"))
    ctx.record_chain(item.ws, steps, attempt=item.attempt)


def record_conflict(ctx: RunContext, item: Item, base: str, conflicts: list[str]) -> None:
    """``item``'s patch does not apply on the integration tip ``base``: quarantined, the
    paths and the three-way text as evidence."""
    shown = ", ".join(conflicts[:20]) + (" ..." if len(conflicts) > 20 else "")
    rec = ctx.ledger.state(item.ws)
    if rec is not None and rec.state in APPLIED:
        ctx.record(item.ws, "queued", attempt=item.attempt,
                   detail=f"the queue re-applies it on {base[:12]}")
    ctx.record(item.ws, "quarantined", attempt=item.attempt, reason="conflict",
               detail=f"conflicts with the integration tip {base[:12]} in: {shown}",
               evidence={"conflicts.txt": ("\n".join(conflicts) + "\n").encode(),
                         "conflicts.diff3": conflict_evidence(ctx.repo, item.patch, base)})


def record_verdict(ctx: RunContext, checks: Checks, job: Job, verdict: Verdict,
                   what: str) -> None:
    """A verdict that is evidence, not a state (a ``run: verdict`` event): on a speculative
    candidate, a discarded one, or a batch's."""
    ok = verdict.outcome is Outcome.OK
    tree = odb.tree_of(ctx.repo, job.candidate)
    judged = [ctx.ws(m[0]) for m in job.members] or [ctx.ws(job.ws)]
    keys = list(dict.fromkeys(acceptance_key(ws) for ws in judged if ws.acceptance))
    patches = f"patch {job.patch[:12]}" if not job.members else \
        "patches " + ", ".join(f"{m[0]} {m[3][:12]}" for m in job.members)
    ctx.ledger.event(
        f"{VERDICT_EVENT} {job.ws} {'passed' if ok else 'failed'}",
        f"{job.kind} candidate {job.candidate[:12]} = {job.parent[:12]} + {patches}: "
        f"{what}\n{verdict.detail}",
        trailers=verdict_trailers(job.ws, tree, passed=ok, acceptance=keys or None,
                                  hooks=hooks_key(checks.base, checks.hooks)
                                  if checks.hooks else None,
                                  candidate=job.candidate))
