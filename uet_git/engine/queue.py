"""The verification queue (the default, ``[verify] window = "auto"`` or N > 1): the integration
queue verified as a speculative pipeline, as merge queues do (Zuul's "nearest non-failing
item").

The chain: patches in the order they reached the queue (topological: a workstream only runs
once its dependencies are committed, so the patches in the queue are independent of each
other). Candidate ``c1 = tip + p1``, ``c2 = c1 + p2``, ... each made in memory
(``verify.make_candidate``) by the loop thread; the first ``window`` of them are judged in
parallel (``verify.verify_candidate``) on verifier threads. Only the head (the first candidate,
built on the integration tip) ever commits.

- The head passes (its parent is the integration tip): ``queued -> applied -> verified ->
  committed``, the integration ref fast-forwarding to it in the last transaction (the ledger's
  CAS, as the one-at-a-time integrator does); the window grows by one (up to its maximum).
  A candidate behind the head that passed waits for the ones before it.
- A candidate fails (``verify-failed``/``hook-failed``): the failure is evidence, never a
  state (a ``run: verdict`` event when the candidate was speculative). The patch leaves the
  chain ("suspect"), the candidates behind it are rebuilt without it onto the nearest
  candidate before it, the window halves (at least 1), and the patch alone is checked once more
  on the integration tip (``tip + patch``: the flake check, which ignores the verdict cache).
  That check decides: it fails on the current tip: ``applied`` (that candidate) ``->
  quarantined`` with both logs as evidence; it passes on the current tip: the failure was a
  flake (or came from a patch ahead of it), and the candidate ``tip + patch`` becomes the head
  and commits; the tip moved while it ran: it is judged again on the new tip (a failure on a
  tip that is no longer the tip is evidence too). A patch that passed its flake check and fails
  again at the head (its parent the tip) is quarantined without another check.
- ``tampered`` on a candidate whose parent is the tip quarantines at once (no flake check); on
  a speculative one (the code of the patches ahead ran too) it makes the patch a suspect. A
  conflict with the integration tip quarantines at once and takes no slot (``queued ->
  quarantined``, the paths as evidence). A conflict with a speculative candidate (patches not
  committed yet) defers the patch: it leaves the chain (those behind it are built without it)
  and is tried again on the tip once every candidate before it is resolved; applying there, it
  joins the chain at its end, conflicting there, it is quarantined. So a
  conflict never depends on a patch that fails.
- The integration ref only fast-forwards to a candidate that passed and whose parent is the
  current tip (checked before each ``committed``). A verdict on a candidate that was discarded
  (rebuilt) is evidence, never a state: a ``run: verdict`` ledger event (``engine/verdicts``),
  which is also how a pass on a speculative candidate survives a crash: the verdict cache of a
  resumed run is derived from the ledger, so the same tree is not judged twice.

Candidates in flight, their refs (``refs/uet/candidates/RUN/N``) and the judgings handed to
verifier threads: ``engine/candidates``; what a verifier thread runs: ``engine/verifier``;
the ledger writes: ``engine/queuerecord``; the tail handed to workers (verify once):
``engine/handed``; ``[verify] batch = K`` (bors: one judging for K patches, bisected on a
failure): ``engine/batch``.

The queue is owned by the loop thread (no locks but the handed tail's): it makes candidates
and records transitions; the verifier threads only run ``verify_candidate`` on a ``Job`` and
hand back the ``Verdict``.
A judging whose candidate is discarded while it runs is stopped (``Job.stop``): its slot goes
to a candidate that can still commit. ``[verify] window = 1`` never uses this module: the
one-at-a-time integrator runs as before. The window is AIMD: it starts at ``window``, grows by
one per commit up to ``max_window`` and halves on each failure.
"""

from __future__ import annotations

import threading
import time

from uet_git.engine.batch import Batches
from uet_git.engine.candidates import (
    BUILT,
    DEFERRED,
    NEW,
    OUT_OF_CHAIN,
    PASSED,
    RUNNING,
    SUSPECT,
    CandidateRefs,
    Item,
    Job,
    Progress,
    Stop,
)
from uet_git.engine.context import RunContext
from uet_git.engine.handed import FailureTap, HandedTail
from uet_git.engine.queuerecord import (
    record_applied,
    record_commit,
    record_conflict,
    record_verdict,
)
from uet_git.engine.verdicts import VerdictCache, acceptance_key
from uet_git.engine.verifier import run_job
from uet_git.engine.verify import (
    Candidate,
    Checks,
    Outcome,
    Verdict,
    empty_candidate,
    make_candidate,
    quick_verdict,
)
from uet_git.gitrepo import odb
from uet_git.ledger.query import WsRecord

__all__ = ["Job", "Progress", "VerifyQueue", "run_job"]


class VerifyQueue:
    """``window``: candidates judged at once to start with; ``max_window`` (default
    ``window``): what it grows to, one per commit (it halves on each failure)."""

    def __init__(self, ctx: RunContext, checks: Checks, cache: VerdictCache, *,
                 window: int, max_window: int | None = None) -> None:
        self.ctx = ctx
        self.checks = checks
        self.cache = cache
        self.max_window = max(1, window, max_window or 0)
        self.window = max(1, window)
        # [verify] batch = K (engine/batch): the chain holds K candidates and ONE judging
        # runs on the furthest.
        self.batches = Batches(ctx.config.verify.batch)
        if self.batches.size > 1:
            self.window = self.max_window = self.batches.size
        self.items: list[Item] = []
        self.running = 0  # jobs out (stopped ones included until they come back)
        self.stops: dict[tuple[str, int, str], threading.Event] = {}
        self.tail = HandedTail(ctx)
        # The workers' failed acceptances reach the handed tail as they end (engine/handed).
        if isinstance(ctx.observer, FailureTap):
            ctx.observer.tail = self.tail
        else:
            ctx.observer = FailureTap(ctx.observer, self.tail)
        self.refs = CandidateRefs(ctx.repo, ctx.run_id)
        self.refs.clear()
        ctx.verdicts = cache
        self.publish_tail()

    def clear_refs(self) -> None:
        """Delete every candidate ref of the run (those a crashed process left, or ours)."""
        self.refs.clear()

    # -- feeding ---------------------------------------------------------------------------

    def add(self, ws_id: str) -> None:
        arriving = self.tail.arrived(ws_id)
        if arriving is not None and ws_id not in self.ctx.reverify:
            # Enqueued after its worker returned `queued` for this patch (the loop enqueues
            # nothing else that a worker asked a tail for).
            rec = WsRecord(ws_id, "queued", attempt=arriving[1], patch=arriving[0])
        else:
            rec = self.ctx.ledger.state(ws_id)
        assert rec is not None and rec.patch is not None and rec.attempt is not None
        handed, before, since = self.tail.place(rec.patch)
        item = Item(ws_id, rec.attempt, rec.patch, fresh=arriving is not None
                    and rec.patch == arriving[0])
        if before and since is not None and rec.state == "queued":
            # Workers whose tools ended together judged their patches on tails chained in
            # the order they were handed out; their acceptance may end in another order. Built
            # now, this patch's candidate would lack the ones handed before it: a tree no
            # worker judged, judged again (B5: one more verification per wave). It waits for
            # them at most as long as its own acceptance took (what judging again costs).
            # While it waits it stays in the handed chain, so the tail workers get holds it.
            now = time.monotonic()
            item.waits_for, item.hold_until = before, now + (now - since)
        else:
            self.forget(rec.patch)
        if rec.state in ("applied", "verified") and rec.candidate:
            item.recorded = rec.candidate
        if rec.state == "queued" and handed not in (None, rec.patch):
            item.offered = handed
        ws = self.ctx.ws(ws_id)
        if rec.state == "queued" and handed not in (None, rec.patch) and ws.acceptance and \
                not self.cache.passed("acceptance", odb.tree_of(self.ctx.repo, handed),
                                      acceptance_key(ws)):
            # Its worker judged it on the queue's tail and it failed there (it passed alone):
            # a failure on a speculative candidate. It waits as a suspect for its flake check
            # at the head instead of taking a slot to fail on the chain again.
            item.status = SUSPECT
            item.failures.append(Verdict(Outcome.FAILED, "verify-failed",
                                         f"acceptance failed on the queue's tail {handed[:12]} "
                                         "in the worker"))
        # Its place: before a patch that waits for it (handed out after it, arrived first).
        at = next((k for k, i in enumerate(self.items) if i.status == NEW
                   and i.candidate is None and rec.patch in i.waits_for), len(self.items))
        self.items.insert(at, item)

    def __contains__(self, ws_id: str) -> bool:
        return any(i.ws == ws_id for i in self.items)

    def busy(self) -> bool:
        return bool(self.items) or self.running > 0

    # -- the loop thread's step ------------------------------------------------------------

    def step(self) -> Progress:
        """Commit passed heads, make the candidates the window holds (conflicts quarantined)
        and the flake checks' candidates."""
        progress = Progress()
        if self.ctx.cancel.is_set():
            return progress
        while True:
            while (head := self.head()) is not None and head.status == PASSED:
                tip = self.ctx.ledger.integration_tip()
                if head.parent != tip:  # cannot happen: _build keeps the chain on the tip
                    self._rebuild(self.items.index(head))
                    break
                record_commit(self.ctx, head)
                self.refs.set(head, None)
                self.items.remove(head)
                self.window = min(self.max_window, self.window + 1)
                progress.committed.append(head.ws)
            self.batches.settle(self)
            self._build(progress)
            if self.batches.size > 1:
                self.batches.covered(self)
            head = self.head()
            if head is None or head.status != PASSED or \
                    head.parent != self.ctx.ledger.integration_tip():
                break  # else a head judged in _build (nothing to run) commits at once
        self.publish_tail()
        return progress

    def publish_tail(self) -> None:
        """``ctx.queue_tail``: where a patch queued now would be built: the last candidate
        when every patch in the chain has one (else unknown: None), then the candidates
        handed to workers, rebuilt on it where it moved (``HandedTail.publish``)."""
        tail: str | None = self.ctx.ledger.integration_tip()
        for item in self.items:
            if item.status in OUT_OF_CHAIN:
                continue
            if item.waits_for and item.candidate is None:
                break  # it and those behind it are in the handed chain below
            if item.candidate is None:
                tail = None
                break
            tail = item.candidate
        self.tail.publish(tail)

    def worker_tail(self, patch: str) -> str | None:
        """``HandedTail.worker_tail`` (a worker thread; ``RunContext.tail_candidate``)."""
        return self.tail.worker_tail(patch)

    def forget(self, patch: str | None) -> None:
        """A handed-out patch reached the queue or left the run: no longer ahead of others."""
        self.tail.forget(patch)

    def coming(self) -> bool:
        return self.tail.coming()

    def head(self) -> Item | None:
        """The first patch of the queue (deferred ones are out of it): the only one that may
        commit. A suspect there holds the commits behind it while its flake check runs, so
        that check is judged on the tip as it stays: the order of the queue holds."""
        return next((i for i in self.items if i.status != DEFERRED), None)

    def chain(self) -> list[Item]:
        """The candidates the window holds, in order."""
        return [i for i in self.items if i.status not in OUT_OF_CHAIN][:self.window]

    def _build(self, progress: Progress) -> None:
        tip = self.ctx.ledger.integration_tip()
        base, built, k = tip, 0, 0
        while k < len(self.items) and built < self.window:
            item = self.items[k]
            if item.status == SUSPECT:
                k += 1
                continue
            if item.status == DEFERRED:
                if base != tip:
                    k += 1  # waits until every candidate before it is resolved
                    continue
                made = make_candidate(self.ctx.repo, item.patch, tip)
                if made.conflicts:
                    self.conflict(item, tip, sorted(made.conflicts))
                    self.items.pop(k)
                    progress.quarantined.append(item.ws)
                    continue
                item.status = NEW  # applies on the tip: joins the chain at its end
                self.items.append(self.items.pop(k))
                continue
            if item.status == NEW and item.waits_for and self._waits(item):
                break  # and those behind it: the queue's order is kept
            if item.status != NEW and item.parent != base:
                # Built on what is no longer before it (a suspect that passed its flake check
                # committed ahead of it): discarded, made again here.
                self._rebuild(k)
            if item.status == NEW:
                if item.recorded and \
                        odb.get_commit(self.ctx.repo, item.recorded).parent == base:
                    cand = item.recorded  # what the ledger holds (a resumed run)
                elif (offered := self._offered_on(item, base)) is not None:
                    # The merge its worker made on this same base (same patch, same tree):
                    # not made again. Pruned meanwhile, ``pin`` makes it again.
                    cand = offered
                else:
                    made = make_candidate(self.ctx.repo, item.patch, base)
                    if made.conflicts and base == tip:
                        self.conflict(item, base, sorted(made.conflicts))
                        self.items.pop(k)
                        progress.quarantined.append(item.ws)
                        continue
                    if made.conflicts:
                        item.status = DEFERRED
                        k += 1
                        continue
                    cand = made.commit or empty_candidate(self.ctx.repo, item.patch, base)
                item.candidate, item.parent, item.status = cand, base, BUILT
                quick = quick_verdict(
                    self.ctx.repo, Candidate(self.ctx.ws(item.ws), item.attempt, item.patch,
                                             cand, base, verified=item.patch),
                    self.checks, self.cache, force=item.ws in self.ctx.reverify)
                if quick is not None:  # nothing to run on it (or the cache answers)
                    item.status, item.verdict = PASSED, quick
                if not (quick is not None and base == tip and item is self.head()):
                    # Keeps its objects alive while it waits; a head that commits in this
                    # step needs none.
                    cand = self.refs.pin(item, cand, base)
            assert item.candidate is not None
            base = item.candidate
            built += 1
            k += 1

    def _offered_on(self, item: Item, base: str) -> str | None:
        """The candidate ``item``'s worker judged, when it is the patch on ``base``."""
        if item.offered is None:
            return None
        try:
            if odb.get_commit(self.ctx.repo, item.offered).parent == base:
                return item.offered
        except odb.MissingObject:
            item.offered = None  # pruned: made again from the patch
        return None

    def _waits(self, item: Item) -> bool:
        """Whether ``item`` still waits for patches handed out before it (see ``add``)."""
        item.waits_for = self.tail.still_handed(item.waits_for)
        if item.waits_for and time.monotonic() < item.hold_until:
            return True
        item.waits_for = []
        self.forget(item.patch)  # in the chain from now on
        return False

    def jobs(self, limit: int) -> list[Job]:
        """Up to ``limit`` judgings to start now: the flake check of a suspect that reached
        the head first (``tip + patch``, alone), then the built candidates of the window in
        order."""
        out: list[Job] = []
        if self.ctx.cancel.is_set():
            return out
        tip = self.ctx.ledger.integration_tip()
        first = self.head()
        if first is not None and first.status == SUSPECT and not first.flake_running \
                and limit > 0:
            made = make_candidate(self.ctx.repo, first.patch, tip)
            if made.conflicts:  # applied on the chain, not on the tip: quarantined there
                first.status = DEFERRED
            else:
                cand = made.commit or empty_candidate(self.ctx.repo, first.patch, tip)
                cand = self.refs.pin(first, cand, tip)
                first.candidate, first.parent = cand, tip
                first.flake_running, first.started = True, time.time()
                out.append(self._job(first, "flake", cand, tip))
        if self.batches.size > 1:
            job = self.batches.next_job(self) if len(out) < limit else None
            if job is not None:
                out.append(job)
            self.running += len(out)
            return out
        for item in self.chain():
            if len(out) >= limit:
                break
            if item.status == BUILT:
                assert item.candidate is not None and item.parent is not None
                item.status = RUNNING
                item.started = time.time()
                out.append(self._job(item, "chain", item.candidate, item.parent))
        self.running += len(out)
        return out

    def _job(self, item: Item, kind: str, candidate: str, parent: str) -> Job:
        stop = Stop(self.ctx.cancel)
        self.stops[(item.ws, item.gen, kind)] = stop
        return Job(item.ws, item.gen, kind, item.attempt, item.patch, candidate, parent, stop)

    def _stop(self, ws_id: str, gen: int) -> None:
        """Stop the judgings of a discarded generation: their verdicts could only be
        evidence, and the slot is worth more to a candidate that can commit."""
        for kind in ("chain", "flake", "batch"):
            stop = self.stops.pop((ws_id, gen, kind), None)
            if stop is not None:
                stop.set()

    def find(self, ws_id: str) -> Item | None:
        return next((i for i in self.items if i.ws == ws_id), None)

    # -- verdicts --------------------------------------------------------------------------

    def finish(self, job: Job, verdict: Verdict, seconds: float) -> Progress:
        """A judging came back (loop thread)."""
        self.running -= 1
        self.stops.pop((job.ws, job.gen, job.kind), None)
        progress = Progress()
        if job.kind == "batch":
            self.batches.done(self, job, verdict, seconds, progress)
            return progress
        item = self.find(job.ws)
        stale = item is None or item.gen != job.gen
        if verdict.outcome is Outcome.CANCELLED:
            if not stale and item is not None:
                if job.kind == "chain" and item.status == RUNNING:
                    item.status = BUILT
                elif job.kind == "flake":
                    item.flake_running = False
            return progress
        if stale:
            self._evidence(job, verdict, "discarded: rebuilt after the candidate was made")
            return progress
        assert item is not None
        item.seconds = seconds
        if job.kind == "flake":
            self._flake_done(item, job, verdict, progress)
            return progress
        if verdict.outcome is Outcome.OK:
            item.status, item.verdict = PASSED, verdict
            if self.head() is not item:
                # Waits for the candidates before it: the pass is evidence until then, and
                # what a resumed run's cache is derived from.
                self._evidence(job, verdict, "passed; waits for the candidates before it")
            return progress
        if verdict.reason == "tampered" and job.parent == self.ctx.ledger.integration_tip():
            self.quarantine(item, job, verdict, progress)
            return progress
        self.suspect(item, job, verdict)
        return progress

    def _halve(self) -> None:
        """A failure shrinks the window (AIMD); a batch keeps its size (bisection, not the
        window, finds the failing patch)."""
        if self.batches.size == 1:
            self.window = max(1, self.window // 2)

    def suspect(self, item: Item, job: Job, verdict: Verdict, *, told: bool = False) -> None:
        """A failure on the chain: evidence only. The patch leaves the chain and waits in its
        place for its flake check (when it reaches the head); those behind it are rebuilt
        without it; the window halves. ``told``: the failure is in the ledger already."""
        if not told and job.parent != self.ctx.ledger.integration_tip():
            self._evidence(job, verdict, "failed on a speculative candidate; the patch is "
                                         "checked alone on the tip when it reaches the head")
        k = self.items.index(item)
        item.ahead = [i.ws for i in self.items[:k] if i.status not in OUT_OF_CHAIN]
        item.failures.append(verdict)
        self.refs.set(item, None)
        item.candidate = item.parent = None
        item.status, item.verdict = SUSPECT, None
        self._rebuild(k + 1)
        self._halve()

    def cancelled(self, job: Job) -> None:
        """A judging stopped by Ctrl-C: the candidate is judged again when the run resumes."""
        self.stops.pop((job.ws, job.gen, job.kind), None)
        self._judged_again(job)

    def _judged_again(self, job: Job) -> None:
        """``job`` ended without a verdict: what it judged is judged again."""
        if job.kind == "batch":
            self.batches.judged_again(self, job)
            return
        item = self.find(job.ws)
        if item is not None and item.gen == job.gen and item.status == RUNNING:
            item.status = BUILT

    def drop(self, ws_id: str) -> None:
        """uet failed on ``ws_id`` (recorded by the loop): out of the chain, those behind it
        are rebuilt."""
        item = self.find(ws_id)
        if item is None:
            return
        k = self.items.index(item)
        out = self.batches.out
        if out is not None and any(m[0] == ws_id for m in out.members):
            self._stop(out.ws, out.gen)
            self._judged_again(out)  # the other patches of its batch, in another one
        self._stop(item.ws, item.gen)
        self.forget(item.patch)
        if item.candidate is not None:
            self.refs.set(item, None)
        self.items.pop(k)
        self._rebuild(k)
        self._release_suspects(ws_id)

    def _release_suspects(self, ws_id: str) -> None:
        """``ws_id`` leaves the queue without committing: a suspect whose failure was on a
        candidate holding it failed on a discarded candidate, which is evidence, never a
        verdict on the suspect: it goes back to the chain, judged anew."""
        for k, item in enumerate(self.items):
            if item.status == SUSPECT and ws_id in item.ahead and not item.flake_running:
                item.status = NEW
                self._rebuild(k)

    def _flake_done(self, item: Item, job: Job, verdict: Verdict, progress: Progress) -> None:
        item.flake_running = False
        tip = self.ctx.ledger.integration_tip()
        if job.parent != tip:  # cannot happen (nothing ahead of it commits), but if it did:
            self._evidence(job, verdict, "flake check on a tip that moved; checked again")
            self.refs.set(item, None)
            item.candidate = item.parent = None
            return
        if verdict.outcome is not Outcome.OK:
            self.quarantine(item, job, verdict, progress)
            return
        # A flake: tip + patch passed, at the head. It commits at the next step; the
        # candidates behind it (built without it) are rebuilt on it.
        item.status, item.verdict = PASSED, verdict
        note = "failed on the queue's candidate, passed alone on the tip (flake check)"
        verdict.detail = f"{note}; {verdict.detail}" if verdict.detail else note

    def quarantine(self, item: Item, job: Job, verdict: Verdict, progress: Progress) -> None:
        ctx = self.ctx
        k = self.items.index(item)
        in_chain = item.status not in OUT_OF_CHAIN
        evidence = dict(verdict.evidence)
        for n, old in enumerate(item.failures, 1):
            for name, data in old.evidence.items():
                evidence[f"chain-{n}-{name}"] = data
        record_applied(self.ctx, item, job.candidate, job.parent)
        detail = verdict.detail
        if item.failures and job.kind == "flake":
            detail = f"{detail} (also on a queue's candidate before: {item.failures[-1].detail})"
        ctx.record(item.ws, "quarantined", attempt=item.attempt, reason=verdict.reason,
                   detail=detail, evidence=evidence)
        self.refs.set(item, None)
        item.candidate = None
        self.items.pop(k)
        if in_chain:  # those behind were built on it
            self._rebuild(k)
            self._halve()
        self._release_suspects(item.ws)
        progress.quarantined.append(item.ws)

    def _rebuild(self, k: int) -> None:
        """Discard the chain's candidates from position ``k`` on: made again on the one
        before. Suspects keep their place: their flake check does not depend on the chain."""
        for item in self.items[k:]:
            if item.status == SUSPECT:
                continue
            self._stop(item.ws, item.gen)
            if item.candidate is not None:
                self.refs.set(item, None)
            item.candidate = item.parent = None
            item.gen += 1
            item.failures, item.ahead = [], []
            item.status, item.verdict = NEW, None

    def conflict(self, item: Item, base: str, conflicts: list[str]) -> None:
        """``item`` does not apply on the integration tip ``base``: quarantined."""
        if item.candidate is not None:
            self.refs.set(item, None)
            item.candidate = None
        record_conflict(self.ctx, item, base, conflicts)

    def _evidence(self, job: Job, verdict: Verdict, what: str) -> None:
        record_verdict(self.ctx, self.checks, job, verdict, what)
