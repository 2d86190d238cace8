"""Batches of the verification queue (``[verify] batch = K``, as bors does; README, "The
verification queue"): the queue's window is K and fixed, and ONE judging at a time runs on the
furthest built candidate of the chain's first K (``Job.members``: every patch it judges, each
workstream's checks on that tree; the verdict cache makes a shared acceptance or the hooks run
once). A pass passes them all (``Uet-Batch-Candidate`` on each ``verified``). A failure with
more than one patch is evidence; the chain stays built and the prefix up to the failed
candidate is known to fail (``fail_job``): its first half is judged next; a pass shortens the
prefix, and when one patch is left its own candidate (the failed one) failed: it becomes a
suspect, as on the chain, and its flake check decides. A pass the cache already holds on a later
candidate (a resumed run) passes the patches ahead of it (``covered``).

``Batches`` keeps the batch state; the queue (``engine/queue.py``, seen here as ``QueueView``)
keeps the chain and calls it from the loop thread.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from uet_git.engine.candidates import BUILT, PASSED, RUNNING, Item, Job, Progress, Stop
from uet_git.engine.context import RunContext
from uet_git.engine.queuerecord import record_verdict
from uet_git.engine.verdicts import BATCH_CANDIDATE, VerdictCache, acceptance_key, hooks_key
from uet_git.engine.verify import Checks, Outcome, Verdict
from uet_git.gitrepo import odb

BATCH_SIZE = "Uet-Batch-Size"  # trailers of `verified` in a batch: how many patches it held


class QueueView(Protocol):
    """What a batch needs of the queue."""

    ctx: RunContext
    checks: Checks
    cache: VerdictCache
    stops: dict[tuple[str, int, str], threading.Event]

    def chain(self) -> list[Item]: ...
    def head(self) -> Item | None: ...
    def find(self, ws_id: str) -> Item | None: ...
    def coming(self) -> bool: ...
    def suspect(self, item: Item, job: Job, verdict: Verdict, *, told: bool = False) -> None: ...
    def quarantine(self, item: Item, job: Job, verdict: Verdict,
                   progress: Progress) -> None: ...


class Batches:
    """``size``: K (1: no batches). ``out``: the batch being judged; ``fail_job`` and
    ``fail_verdict``: the last batch that failed, the chain's prefix up to its last patch
    (that generation) known to fail."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.out: Job | None = None
        self.fail_job: Job | None = None
        self.fail_verdict: Verdict | None = None

    def next_job(self, q: QueueView) -> Job | None:
        """The batch to judge now (one at a time): the chain's built prefix up to ``size``
        candidates, the furthest judged with every workstream's checks; after a failure, the
        first half of the prefix known to fail (bisection). While patches are on their way
        (handed to workers for their acceptance on the tail) a batch short of K waits for
        them: they reach the queue within one acceptance."""
        if self.out is not None:
            return None
        prefix: list[Item] = []
        for item in q.chain():
            if item.status not in (BUILT, PASSED):
                break
            prefix.append(item)
        known = self.known_fail(q)
        if known is not None:
            n, lead = known
            prefix = prefix[:lead + max(1, (n - lead) // 2)]
        elif q.coming() and len(prefix) < self.size and len(q.chain()) < self.size:
            return None
        while prefix and prefix[-1].status == PASSED:
            prefix.pop()  # passed on its own candidate: commits without a batch
        judged = [i for i in prefix if i.status == BUILT]
        if not judged:
            return None
        last, head = prefix[-1], prefix[0]
        assert last.candidate is not None and head.parent is not None
        now = time.time()
        for item in judged:
            item.status, item.started = RUNNING, now
        stop = Stop(q.ctx.cancel)
        for item in judged:
            q.stops[(item.ws, item.gen, "batch")] = stop
        self.out = Job(last.ws, last.gen, "batch", last.attempt, last.patch, last.candidate,
                       head.parent, stop,
                       members=tuple((i.ws, i.gen, i.attempt, i.patch) for i in judged),
                       span=len(prefix))
        return self.out

    def judged_again(self, q: QueueView, job: Job) -> None:
        """The batch ``job`` ended without a verdict: its patches are judged again."""
        self.out = None
        for ws, gen, _, _ in job.members:
            q.stops.pop((ws, gen, "batch"), None)
            member = q.find(ws)
            if member is not None and member.gen == gen and member.status == RUNNING:
                member.status = BUILT

    def done(self, q: QueueView, job: Job, verdict: Verdict, seconds: float,
             progress: Progress) -> None:
        """A batch's verdict. Passed: every patch it judged passes (they commit head by head
        in the queue's ``step``). Failed: alone (span 1), the patch is a suspect as on the
        chain; else the prefix is known to fail and its first half is judged next; a pass of
        a part of a prefix known to fail shortens it, and a prefix of one names the patch (a
        suspect, whose flake check on the tip decides)."""
        self.out = None
        items = [q.find(ws) for ws, _, _, _ in job.members]
        fresh = [i for i, (_, gen, _, _) in zip(items, job.members, strict=True)
                 if i is not None and i.gen == gen]
        for ws, gen, _, _ in job.members:
            q.stops.pop((ws, gen, "batch"), None)
        if verdict.outcome is Outcome.CANCELLED or len(fresh) < len(job.members):
            for item in fresh:
                if item.status == RUNNING:
                    item.status = BUILT
            if verdict.outcome is not Outcome.CANCELLED:
                record_verdict(q.ctx, q.checks, job, verdict,
                               "discarded: rebuilt after the batch was made")
            return
        what = f"batch of {job.span}: candidate {job.candidate[:12]} = {job.parent[:12]} " \
               f"+ {job.span} patch{'es' * (job.span != 1)}"
        if verdict.outcome is Outcome.OK:
            if job.span > 1 or q.head() is not fresh[-1]:
                record_verdict(q.ctx, q.checks, job, verdict, f"passed as a {what}")
            for item in fresh:
                item.status, item.seconds = PASSED, seconds
                trailers = dict(verdict.trailers)
                if job.span > 1:
                    trailers[BATCH_SIZE] = str(job.span)
                    trailers[BATCH_CANDIDATE] = job.candidate
                item.verdict = Verdict(Outcome.OK, detail=f"passed in a {what}; "
                                       f"{verdict.detail}" if job.span > 1 else verdict.detail,
                                       evidence=verdict.evidence, trailers=trailers)
            self.settle(q)
            return
        if job.span == 1:
            item = fresh[0]
            if verdict.reason == "tampered" and job.parent == q.ctx.ledger.integration_tip():
                q.quarantine(item, job, verdict, progress)
            else:
                q.suspect(item, job, verdict)
            return
        record_verdict(q.ctx, q.checks, job, verdict, f"failed as a {what}: bisected")
        for item in fresh:
            item.status = BUILT
        self.fail_job, self.fail_verdict = job, verdict

    def covered(self, q: QueueView) -> None:
        """A batch's pass already known (the verdict cache: a resumed run, a tree judged
        before): a candidate that passed whose tree also passed every check of the patches
        ahead of it in the chain passes them too, as their batch."""
        chain = q.chain()
        hk = hooks_key(q.checks.base, q.checks.hooks) if q.checks.hooks else None
        for j in range(len(chain) - 1, 0, -1):
            last = chain[j]
            if last.status != PASSED or last.candidate is None:
                continue
            ahead = chain[:j]
            if any(i.status not in (BUILT, PASSED) for i in ahead):
                continue
            tree = odb.tree_of(q.ctx.repo, last.candidate)
            if hk is not None and not q.cache.passed("hooks", tree, hk):
                continue
            if not all(q.cache.passed("acceptance", tree, acceptance_key(q.ctx.ws(i.ws)))
                       for i in ahead if i.status == BUILT and q.ctx.ws(i.ws).acceptance):
                continue
            for item in ahead:
                if item.status == BUILT:
                    item.status = PASSED
                    item.verdict = Verdict(
                        Outcome.OK, detail=f"passed in a batch of {j + 1}: its checks passed "
                        f"on the candidate {last.candidate[:12]} in this run",
                        trailers={BATCH_SIZE: str(j + 1), BATCH_CANDIDATE: last.candidate})
            return

    def known_fail(self, q: QueueView) -> tuple[int, int] | None:
        """(n, lead): the chain's first n candidates are known to fail (the last of them is
        the failed batch's candidate, not rebuilt since), the first ``lead`` of them passed
        on their own and commit. None: no such prefix."""
        job = self.fail_job
        if job is None:
            return None
        chain = q.chain()
        n = next((k + 1 for k, i in enumerate(chain) if i.ws == job.ws and i.gen == job.gen),
                 None)
        if n is None:  # rebuilt, gone, or out of the chain: the failure was on another tree
            self.fail_job = self.fail_verdict = None
            return None
        lead = 0
        while lead < n and chain[lead].status == PASSED:
            lead += 1
        return n, lead

    def settle(self, q: QueueView) -> None:
        """A prefix known to fail down to one patch not passed: that patch's own candidate
        (the failed batch's last) failed, so it is a suspect (its flake check decides)."""
        known = self.known_fail(q)
        if known is None or known[0] - known[1] > 1:
            return
        n, lead = known
        assert self.fail_job is not None and self.fail_verdict is not None
        job, verdict = self.fail_job, self.fail_verdict
        self.fail_job = self.fail_verdict = None
        if lead < n:
            q.suspect(q.chain()[n - 1], job, verdict, told=True)
