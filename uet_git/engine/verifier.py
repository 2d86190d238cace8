"""What a verifier thread of the verification queue runs (``engine/queue.py``): one ``Job``
(a chain candidate, a flake check, or a batch of ``[verify] batch``) judged through
``verify.verify_candidate``, the one integrate-and-verify path. The thread only judges; the
loop thread owns the queue and records what the verdict means.
"""

from __future__ import annotations

import time

from uet_git.engine.candidates import Job
from uet_git.engine.context import RunContext
from uet_git.engine.verdicts import VerdictCache, acceptance_key
from uet_git.engine.verify import (
    INTEGRATOR,
    Bench,
    Candidate,
    Checks,
    Outcome,
    Verdict,
    verify_candidate,
)
from uet_git.gitrepo import odb


def run_job(ctx: RunContext, checks: Checks, cache: VerdictCache, job: Job, *,
            verifier: int) -> tuple[Verdict, float]:
    """Judge one candidate (a verifier thread). ``verifier``: 0, 1, ... (observer number
    INTEGRATOR - verifier, port block of slot ``jobs + verifier``)."""
    start = time.monotonic()
    bench = Bench(ctx.run_id, ctx.target, ctx.pool, ctx.observer, job.stop or ctx.cancel,
                  ctx.guard, shown=INTEGRATOR - verifier, slot=ctx.pool.size - 1 + verifier,
                  cache=None if job.kind == "flake" else cache,
                  guard_as=f"{job.ws} (verifier {verifier})", remote=ctx.executor)
    what = {"flake": "flake", "batch": "batch"}.get(job.kind, "candidate")
    members = job.members or ((job.ws, job.gen, job.attempt, job.patch),)
    try:
        verdict = Verdict(Outcome.OK)
        for ws_id, _, attempt, patch in members:
            # One run per distinct check on the batch's candidate: what passed on its tree
            # (the first member's hooks, an acceptance another member shares) is in the
            # cache, so the next member's call runs only what is new.
            cand = Candidate(ctx.ws(ws_id), attempt, patch, job.candidate, job.parent,
                             verified=patch)
            one = verify_candidate(ctx.repo, cand, checks, bench,
                                   log_dir=ctx.log_dir(ws_id, attempt,
                                                       f"{what}-{job.candidate[:12]}"),
                                   label=f"{ctx.run_id}/{ws_id}/{attempt}/{what}",
                                   force=job.kind == "flake" or ws_id in ctx.reverify)
            verdict = one if len(members) == 1 else _merge(verdict, one, ws_id)
            if one.outcome is not Outcome.OK:
                break
    finally:
        ctx.observer.worker(INTEGRATOR - verifier, None)
    if job.kind == "flake" and verdict.outcome is Outcome.OK:
        cache.add("acceptance", odb.tree_of(ctx.repo, job.candidate),
                  acceptance_key(ctx.ws(job.ws)))
    return verdict, time.monotonic() - start


def _merge(into: Verdict, one: Verdict, ws_id: str) -> Verdict:
    """A batch's verdict so far and one member's: the first failure decides; the evidence
    and details of each member's run, named by workstream."""
    detail = "; ".join(d for d in (into.detail, f"{ws_id}: {one.detail}" if one.detail
                                   else "") if d)
    if one.outcome is not Outcome.OK:
        detail = f"{ws_id}: {one.detail}"
    evidence = {**into.evidence, **{f"{ws_id}-{k}": v for k, v in one.evidence.items()}}
    return Verdict(one.outcome, one.reason, detail, evidence, {**into.trailers, **one.trailers})
