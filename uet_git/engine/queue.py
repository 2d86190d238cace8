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

Representation of candidates in flight: ``refs/uet/candidates/RUN/N`` (N counts up within a
process) points to each candidate made and not yet committed or discarded; it keeps the
candidate's objects alive while it waits (a worktree HEAD only does while it is checked out)
and shows the speculative window with ``git for-each-ref refs/uet/candidates/``. The refs are
deleted when their candidate is committed or discarded, and all of them when the run stops or
starts again (a resume after kill -9). ``uet fsck`` checks that a finished run has none and that
each one is built on the integration history. The ledger states stay what they are with one
integrator: a workstream is ``queued`` until its candidate reaches the head.

Batches (``[verify] batch = K``, bors): the window is K and fixed; ONE judging at a time
runs on the furthest built candidate of the chain's first K (``Job.members``: every patch it
judges, each workstream's checks on that tree; the verdict cache makes a shared acceptance or
the hooks run once). A pass passes them all (``Uet-Batch-Candidate`` on each ``verified``). A
failure with more than one patch is evidence; the chain stays built and the prefix up to the
failed candidate is known to fail (``fail_job``): its first half is judged next; a pass
shortens the prefix, and when one patch is left its own candidate (the failed one) failed: it
becomes a suspect, as on the chain, and its flake check decides. A pass the cache already
holds on a later candidate (a resumed run) passes the patches ahead of it (``_covered``).

The queue is owned by the loop thread (no locks): it makes candidates and records transitions;
the verifier threads only run ``verify_candidate`` on a ``Job`` and hand back the ``Verdict``.
A judging whose candidate is discarded while it runs is stopped (``Job.stop``): its slot goes
to a candidate that can still commit. ``[verify] window = 1`` never uses this module: the
one-at-a-time integrator runs as before. The window is AIMD: it starts at ``window``, grows by
one per commit up to ``max_window`` and halves on each failure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from uet_git.engine.context import RunContext
from uet_git.engine.verdicts import (
    BATCH_CANDIDATE,
    VERDICT_EVENT,
    VerdictCache,
    acceptance_key,
    hooks_key,
    verdict_trailers,
)
from uet_git.engine.verify import (
    INTEGRATOR,
    Bench,
    Candidate,
    Checks,
    Outcome,
    Verdict,
    empty_candidate,
    make_candidate,
    quick_verdict,
    verify_candidate,
)
from uet_git.gitrepo import odb
from uet_git.gitrepo.merge import rebase_conflict_text as conflict_evidence
from uet_git.gitrepo.refs import for_each_ref
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.keepalive import write_pinned
from uet_git.ledger.layout import candidate_prefix, candidate_ref
from uet_git.ledger.query import WsRecord
from uet_git.ledger.writer import Step

NEW = "new"  # no candidate yet
BUILT = "built"  # candidate made, not judged
RUNNING = "running"  # being judged
PASSED = "passed"
SUSPECT = "suspect"  # failed on the chain: out of it; its flake check (tip + patch) decides
DEFERRED = "deferred"  # conflicts with a speculative candidate: out of the chain for now
OUT_OF_CHAIN = (SUSPECT, DEFERRED)

VERIFY_START = "Uet-Verify-Start"  # trailers of `verified`: when the judging started (epoch s)
VERIFY_SECONDS = "Uet-Verify-Seconds"
BATCH_SIZE = "Uet-Batch-Size"  # trailers of `verified` in a batch: how many patches it held


class Stop(threading.Event):
    """A judging's cancel: set for this judging alone (its candidate was discarded), or the
    run's (Ctrl-C). Commands poll ``is_set``."""

    def __init__(self, run: threading.Event) -> None:
        super().__init__()
        self.run = run

    def is_set(self) -> bool:
        return super().is_set() or self.run.is_set()


@dataclass
class Item:
    ws: str
    attempt: int
    patch: str
    candidate: str | None = None
    parent: str | None = None
    ref: str | None = None
    status: str = NEW
    gen: int = 0  # bumped on every rebuild: a verdict of an older generation is stale
    verdict: Verdict | None = None
    failures: list[Verdict] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)  # a suspect: the patches its failure held
    flake_running: bool = False
    started: float = 0.0
    seconds: float = 0.0
    recorded: str | None = None  # candidate the ledger holds (applied/verified) at seeding
    # Patches handed to workers before this one and not yet in the queue: its worker judged
    # it on a tail holding them, so it is not built before they arrive (until hold_until).
    waits_for: list[str] = field(default_factory=list)
    hold_until: float = 0.0
    # Its worker queued it this run and the queue recorded nothing for it since: the ledger
    # holds (or is writing) ``queued``, and the queue need not wait for that write to know it.
    fresh: bool = False


@dataclass(frozen=True)
class Job:
    """One judging to run on a verifier thread."""

    ws: str
    gen: int
    kind: str  # "chain" | "flake" | "batch"
    attempt: int
    patch: str
    candidate: str
    parent: str
    stop: threading.Event | None = field(default=None, compare=False, hash=False)
    # kind "batch": (ws, gen, attempt, patch) of each patch judged on ``candidate`` (the last
    # one's), and ``span``: the chain positions from the head the candidate holds.
    members: tuple[tuple[str, int, int, str], ...] = ()
    span: int = 1


@dataclass
class Progress:
    committed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)


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
        # [verify] batch = K (engine doc: "Batches"): the chain holds K candidates and ONE
        # judging runs on the furthest. fail_job: the last batch that failed; the chain's
        # prefix up to its last patch (that generation) is known to fail.
        self.batch = ctx.config.verify.batch
        if self.batch > 1:
            self.window = self.max_window = self.batch
        self.batch_out: Job | None = None  # the batch being judged
        self.fail_job: Job | None = None
        self.fail_verdict: Verdict | None = None
        self.items: list[Item] = []
        self.running = 0  # jobs out (stopped ones included until they come back)
        self.stops: dict[tuple[str, int, str], threading.Event] = {}
        # Verify once: the candidates handed to workers for their acceptance (patch ->
        # candidate, in the order handed out), chained after the queue's own tail, so that
        # workers whose tools end together each judge the tree the queue will make, not all
        # the same tail. Read and written by worker threads (worker_tail) and the loop thread.
        self._lock = threading.Lock()
        self._chain_tail: str | None = None
        self.handed: dict[str, str] = {}
        self.offered: dict[str, str] = {}  # what each worker was given (handed may be rebuilt)
        self.handed_at: dict[str, float] = {}  # monotonic time each patch was handed out
        # ws -> (patch, attempt) of the patches workers asked a tail for (their trailers):
        # what `add` would otherwise read from the ledger, which waits for the worker's
        # `queued` to be written (a whole fsynced transaction on the loop thread, before the
        # commit's own; unread, the two go in one group transaction).
        self.arriving: dict[str, tuple[str, int]] = {}
        self._n = 0
        self.clear_refs()
        ctx.verdicts = cache
        self.publish_tail()

    # -- refs ------------------------------------------------------------------------------

    def clear_refs(self) -> None:
        """Delete every candidate ref of the run (those a crashed process left, or ours)."""
        left = for_each_ref(self.ctx.repo, candidate_prefix(self.ctx.run_id))
        if left:
            tx = self.ctx.repo.transaction()
            for name, oid in left.items():
                tx.delete(name, oid)
            tx.commit()
            nums = [int(n.rsplit("/", 1)[1]) for n in left]
            self._n = max(self._n, *nums)

    def _set_ref(self, item: Item, candidate: str | None) -> None:
        if candidate is None and item.ref is None:
            return  # nothing to delete: no transaction (a git process) for nothing
        tx = self.ctx.repo.transaction()
        if item.ref is not None and item.candidate is not None:
            tx.delete(item.ref, item.candidate)
        new = None
        if candidate is not None:
            self._n += 1
            new = candidate_ref(self.ctx.run_id, self._n)
            tx.create(new, candidate)
        tx.commit()  # a failed one changed nothing: item.ref still names what exists
        item.ref = new

    def _pin(self, item: Item, cand: str, base: str) -> str:
        """``cand`` (``item``'s patch on ``base``, made in memory) kept by its candidate ref,
        complete on disk: a concurrent ``git gc --prune=now`` may take a commit no ref names
        yet, and then it is made again (same merge, same tree). Returns the kept commit."""
        made = [cand]

        def write() -> str:
            if made:
                return made.pop()
            again = make_candidate(self.ctx.repo, item.patch, base)
            return again.commit or empty_candidate(self.ctx.repo, item.patch, base)

        def pin(oid: str) -> None:
            self._set_ref(item, oid)
            item.candidate = oid  # what the ref now names (a retry replaces it)

        return write_pinned(self.ctx.repo, write, pin, base=base,
                            what=f"{item.ws}: candidate")

    # -- feeding ---------------------------------------------------------------------------

    def add(self, ws_id: str) -> None:
        with self._lock:
            arriving = self.arriving.pop(ws_id, None)
        if arriving is not None and ws_id not in self.ctx.reverify:
            # Enqueued after its worker returned `queued` for this patch (the loop enqueues
            # nothing else that a worker asked a tail for).
            rec = WsRecord(ws_id, "queued", attempt=arriving[1], patch=arriving[0])
        else:
            rec = self.ctx.ledger.state(ws_id)
        assert rec is not None and rec.patch is not None and rec.attempt is not None
        with self._lock:
            handed = self.offered.get(rec.patch)
            order = list(self.handed)
            before = order[:order.index(rec.patch)] if rec.patch in self.handed else []
            since = self.handed_at.get(rec.patch)
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
                self._commit(head)
                self.items.remove(head)
                self.window = min(self.max_window, self.window + 1)
                progress.committed.append(head.ws)
            self._settle()
            self._build(progress)
            if self.batch > 1:
                self._covered()
            head = self.head()
            if head is None or head.status != PASSED or \
                    head.parent != self.ctx.ledger.integration_tip():
                break  # else a head judged in _build (nothing to run) commits at once
        self.publish_tail()
        return progress

    def publish_tail(self) -> None:
        """``ctx.queue_tail``: where a patch queued now would be built: the last candidate
        when every patch in the chain has one (else unknown: None), then the candidates
        handed to workers, rebuilt on it where it moved."""
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
        with self._lock:
            self._chain_tail = tail
            base = tail
            for patch, cand in list(self.handed.items()):
                if base is None:
                    break
                if odb.get_commit(self.ctx.repo, cand).parent != base:
                    made = make_candidate(self.ctx.repo, patch, base)
                    if made.conflicts or made.commit is None:
                        del self.handed[patch]
                        continue
                    cand = self.handed[patch] = made.commit
                base = cand
            self.ctx.queue_tail = base

    def worker_tail(self, patch: str) -> str | None:
        """For a worker's acceptance (a worker thread; ``RunContext.tail_candidate``): the
        patch on the queue's tail, the candidates handed to other workers included, or None
        (no tail known, it does not apply there, or the tail is its own parent: judged as
        it is)."""
        info = odb.get_commit(self.ctx.repo, patch)
        t = parse_trailers(info.message)
        ws, attempt = t.get("Uet-Workstream"), t.get("Uet-Attempt", "")
        with self._lock:
            if ws and attempt.isdigit():
                self.arriving[ws] = (patch, int(attempt))
            base = self.ctx.queue_tail if self._chain_tail is not None else None
            if base is None:
                return None
            self.handed_at[patch] = time.monotonic()
            if info.parent == base:
                self.handed[patch] = patch
                self.ctx.queue_tail = patch
                return None
            made = make_candidate(self.ctx.repo, patch, base)
            if made.conflicts or made.commit is None:
                return None
            self.handed[patch] = self.offered[patch] = made.commit
            self.ctx.queue_tail = made.commit
            return made.commit

    def forget(self, patch: str | None) -> None:
        """A handed-out patch reached the queue or left the run: no longer ahead of others."""
        if patch is None:
            return
        with self._lock:
            self.handed.pop(patch, None)
            self.offered.pop(patch, None)
            self.handed_at.pop(patch, None)

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
                    self._conflict(item, tip, sorted(made.conflicts))
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
                else:
                    made = make_candidate(self.ctx.repo, item.patch, base)
                    if made.conflicts and base == tip:
                        self._conflict(item, base, sorted(made.conflicts))
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
                    cand = self._pin(item, cand, base)
            assert item.candidate is not None
            base = item.candidate
            built += 1
            k += 1

    def _waits(self, item: Item) -> bool:
        """Whether ``item`` still waits for patches handed out before it (see ``add``)."""
        with self._lock:
            item.waits_for = [p for p in item.waits_for if p in self.handed]
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
                cand = self._pin(first, cand, tip)
                first.candidate, first.parent = cand, tip
                first.flake_running, first.started = True, time.time()
                out.append(self._job(first, "flake", cand, tip))
        if self.batch > 1:
            job = self._batch_job() if len(out) < limit else None
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

    def _batch_job(self) -> Job | None:
        """The batch to judge now (one at a time): the chain's built prefix up to ``batch``
        candidates, the furthest judged with every workstream's checks; after a failure, the
        first half of the prefix known to fail (bisection). While patches are on their way
        (handed to workers for their acceptance on the tail) a batch short of K waits for
        them: they reach the queue within one acceptance."""
        if self.batch_out is not None:
            return None
        prefix: list[Item] = []
        for item in self.chain():
            if item.status not in (BUILT, PASSED):
                break
            prefix.append(item)
        known = self._known_fail()
        if known is not None:
            n, lead = known
            prefix = prefix[:lead + max(1, (n - lead) // 2)]
        else:
            with self._lock:
                coming = bool(self.handed)
            if coming and len(prefix) < self.batch and len(self.chain()) < self.batch:
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
        stop = Stop(self.ctx.cancel)
        for item in judged:
            self.stops[(item.ws, item.gen, "batch")] = stop
        self.batch_out = Job(last.ws, last.gen, "batch", last.attempt, last.patch,
                             last.candidate, head.parent, stop,
                             members=tuple((i.ws, i.gen, i.attempt, i.patch) for i in judged),
                             span=len(prefix))
        return self.batch_out

    def _stop(self, ws_id: str, gen: int) -> None:
        """Stop the judgings of a discarded generation: their verdicts could only be
        evidence, and the slot is worth more to a candidate that can commit."""
        for kind in ("chain", "flake", "batch"):
            stop = self.stops.pop((ws_id, gen, kind), None)
            if stop is not None:
                stop.set()

    def _item(self, ws_id: str) -> Item | None:
        return next((i for i in self.items if i.ws == ws_id), None)

    # -- verdicts --------------------------------------------------------------------------

    def finish(self, job: Job, verdict: Verdict, seconds: float) -> Progress:
        """A judging came back (loop thread)."""
        self.running -= 1
        self.stops.pop((job.ws, job.gen, job.kind), None)
        progress = Progress()
        if job.kind == "batch":
            self._batch_done(job, verdict, seconds, progress)
            return progress
        item = self._item(job.ws)
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
            self._quarantine(item, job, verdict, progress)
            return progress
        self._suspect(item, job, verdict)
        return progress

    def _batch_done(self, job: Job, verdict: Verdict, seconds: float,
                    progress: Progress) -> None:
        """A batch's verdict. Passed: every patch it judged passes (they commit head by head
        in ``step``). Failed: alone (span 1), the patch is a suspect as on the chain; else
        the prefix is known to fail and its first half is judged next; a pass of a part of
        a prefix known to fail shortens it, and a prefix of one names the patch (a suspect,
        whose flake check on the tip decides)."""
        self.batch_out = None
        items = [self._item(ws) for ws, _, _, _ in job.members]
        fresh = [i for i, (_, gen, _, _) in zip(items, job.members, strict=True)
                 if i is not None and i.gen == gen]
        for ws, gen, _, _ in job.members:
            self.stops.pop((ws, gen, "batch"), None)
        if verdict.outcome is Outcome.CANCELLED or len(fresh) < len(job.members):
            for item in fresh:
                if item.status == RUNNING:
                    item.status = BUILT
            if verdict.outcome is not Outcome.CANCELLED:
                self._evidence(job, verdict, "discarded: rebuilt after the batch was made")
            return
        what = f"batch of {job.span}: candidate {job.candidate[:12]} = {job.parent[:12]} " \
               f"+ {job.span} patch{'es' * (job.span != 1)}"
        if verdict.outcome is Outcome.OK:
            if job.span > 1 or self.head() is not fresh[-1]:
                self._evidence(job, verdict, f"passed as a {what}")
            for item in fresh:
                item.status, item.seconds = PASSED, seconds
                trailers = dict(verdict.trailers)
                if job.span > 1:
                    trailers[BATCH_SIZE] = str(job.span)
                    trailers[BATCH_CANDIDATE] = job.candidate
                item.verdict = Verdict(Outcome.OK, detail=f"passed in a {what}; "
                                       f"{verdict.detail}" if job.span > 1 else verdict.detail,
                                       evidence=verdict.evidence, trailers=trailers)
            self._settle()
            return
        if job.span == 1:
            item = fresh[0]
            if verdict.reason == "tampered" and job.parent == self.ctx.ledger.integration_tip():
                self._quarantine(item, job, verdict, progress)
            else:
                self._suspect(item, job, verdict)
            return
        self._evidence(job, verdict, f"failed as a {what}: bisected")
        for item in fresh:
            item.status = BUILT
        self.fail_job, self.fail_verdict = job, verdict

    def _covered(self) -> None:
        """A batch's pass already known (the verdict cache: a resumed run, a tree judged
        before): a candidate that passed whose tree also passed every check of the patches
        ahead of it in the chain passes them too, as their batch."""
        chain = self.chain()
        hk = hooks_key(self.checks.base, self.checks.hooks) if self.checks.hooks else None
        for j in range(len(chain) - 1, 0, -1):
            last = chain[j]
            if last.status != PASSED or last.candidate is None:
                continue
            ahead = chain[:j]
            if any(i.status not in (BUILT, PASSED) for i in ahead):
                continue
            tree = odb.tree_of(self.ctx.repo, last.candidate)
            if hk is not None and not self.cache.passed("hooks", tree, hk):
                continue
            if not all(self.cache.passed("acceptance", tree, acceptance_key(self.ctx.ws(i.ws)))
                       for i in ahead if i.status == BUILT and self.ctx.ws(i.ws).acceptance):
                continue
            for item in ahead:
                if item.status == BUILT:
                    item.status = PASSED
                    item.verdict = Verdict(
                        Outcome.OK, detail=f"passed in a batch of {j + 1}: its checks passed "
                        f"on the candidate {last.candidate[:12]} in this run",
                        trailers={BATCH_SIZE: str(j + 1), BATCH_CANDIDATE: last.candidate})
            return

    def _known_fail(self) -> tuple[int, int] | None:
        """(n, lead): the chain's first n candidates are known to fail (the last of them is
        the failed batch's candidate, not rebuilt since), the first ``lead`` of them passed
        on their own and commit. None: no such prefix."""
        job = self.fail_job
        if job is None:
            return None
        chain = self.chain()
        n = next((k + 1 for k, i in enumerate(chain) if i.ws == job.ws and i.gen == job.gen),
                 None)
        if n is None:  # rebuilt, gone, or out of the chain: the failure was on another tree
            self.fail_job = self.fail_verdict = None
            return None
        lead = 0
        while lead < n and chain[lead].status == PASSED:
            lead += 1
        return n, lead

    def _settle(self) -> None:
        """A prefix known to fail down to one patch not passed: that patch's own candidate
        (the failed batch's last) failed, so it is a suspect (its flake check decides)."""
        known = self._known_fail()
        if known is None or known[0] - known[1] > 1:
            return
        n, lead = known
        assert self.fail_job is not None and self.fail_verdict is not None
        job, verdict = self.fail_job, self.fail_verdict
        self.fail_job = self.fail_verdict = None
        if lead < n:
            self._suspect(self.chain()[n - 1], job, verdict, told=True)

    def _halve(self) -> None:
        """A failure shrinks the window (AIMD); a batch keeps its size (bisection, not the
        window, finds the failing patch)."""
        if self.batch == 1:
            self.window = max(1, self.window // 2)

    def _suspect(self, item: Item, job: Job, verdict: Verdict, *, told: bool = False) -> None:
        """A failure on the chain: evidence only. The patch leaves the chain and waits in its
        place for its flake check (when it reaches the head); those behind it are rebuilt
        without it; the window halves. ``told``: the failure is in the ledger already."""
        if not told and job.parent != self.ctx.ledger.integration_tip():
            self._evidence(job, verdict, "failed on a speculative candidate; the patch is "
                                         "checked alone on the tip when it reaches the head")
        k = self.items.index(item)
        item.ahead = [i.ws for i in self.items[:k] if i.status not in OUT_OF_CHAIN]
        item.failures.append(verdict)
        self._set_ref(item, None)
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
            self.batch_out = None
            for ws, gen, _, _ in job.members:
                self.stops.pop((ws, gen, "batch"), None)
                member = self._item(ws)
                if member is not None and member.gen == gen and member.status == RUNNING:
                    member.status = BUILT
            return
        item = self._item(job.ws)
        if item is not None and item.gen == job.gen and item.status == RUNNING:
            item.status = BUILT

    def drop(self, ws_id: str) -> None:
        """uet failed on ``ws_id`` (recorded by the loop): out of the chain, those behind it
        are rebuilt."""
        item = self._item(ws_id)
        if item is None:
            return
        k = self.items.index(item)
        out = self.batch_out
        if out is not None and any(m[0] == ws_id for m in out.members):
            self._stop(out.ws, out.gen)
            self._judged_again(out)  # the other patches of its batch, in another one
        self._stop(item.ws, item.gen)
        self.forget(item.patch)
        if item.candidate is not None:
            self._set_ref(item, None)
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
            self._set_ref(item, None)
            item.candidate = item.parent = None
            return
        if verdict.outcome is not Outcome.OK:
            self._quarantine(item, job, verdict, progress)
            return
        # A flake: tip + patch passed, at the head. It commits at the next step; the
        # candidates behind it (built without it) are rebuilt on it.
        item.status, item.verdict = PASSED, verdict
        note = "failed on the queue's candidate, passed alone on the tip (flake check)"
        verdict.detail = f"{note}; {verdict.detail}" if verdict.detail else note

    def _quarantine(self, item: Item, job: Job, verdict: Verdict, progress: Progress) -> None:
        ctx = self.ctx
        k = self.items.index(item)
        in_chain = item.status not in OUT_OF_CHAIN
        evidence = dict(verdict.evidence)
        for n, old in enumerate(item.failures, 1):
            for name, data in old.evidence.items():
                evidence[f"chain-{n}-{name}"] = data
        self._to_applied(item, job.candidate, job.parent)
        detail = verdict.detail
        if item.failures and job.kind == "flake":
            detail = f"{detail} (also on a queue's candidate before: {item.failures[-1].detail})"
        ctx.record(item.ws, "quarantined", attempt=item.attempt, reason=verdict.reason,
                   detail=detail, evidence=evidence)
        self._set_ref(item, None)
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
                self._set_ref(item, None)
            item.candidate = item.parent = None
            item.gen += 1
            item.failures, item.ahead = [], []
            item.status, item.verdict = NEW, None

    def _evidence(self, job: Job, verdict: Verdict, what: str) -> None:
        ok = verdict.outcome is Outcome.OK
        tree = odb.tree_of(self.ctx.repo, job.candidate)
        judged = [self.ctx.ws(m[0]) for m in job.members] or [self.ctx.ws(job.ws)]
        keys = list(dict.fromkeys(acceptance_key(ws) for ws in judged if ws.acceptance))
        patches = f"patch {job.patch[:12]}" if not job.members else \
            "patches " + ", ".join(f"{m[0]} {m[3][:12]}" for m in job.members)
        self.ctx.ledger.event(
            f"{VERDICT_EVENT} {job.ws} {'passed' if ok else 'failed'}",
            f"{job.kind} candidate {job.candidate[:12]} = {job.parent[:12]} + {patches}: "
            f"{what}\n{verdict.detail}",
            trailers=verdict_trailers(job.ws, tree, passed=ok, acceptance=keys or None,
                                      hooks=hooks_key(self.checks.base, self.checks.hooks)
                                      if self.checks.hooks else None,
                                      candidate=job.candidate))

    # -- ledger ----------------------------------------------------------------------------

    def _to_applied(self, item: Item, candidate: str, parent: str) -> None:
        """Record ``applied`` with ``candidate`` (from queued; a stale recorded candidate goes
        back to queued first, as the integrator does)."""
        ctx = self.ctx
        rec = ctx.ledger.state(item.ws)
        assert rec is not None
        if rec.state in ("applied", "verified") and rec.candidate == candidate:
            return
        if rec.state in ("applied", "verified"):
            ctx.record(item.ws, "queued", attempt=item.attempt,
                       detail=f"the queue made a new candidate on {parent[:12]}: re-apply")
        ctx.record(item.ws, "applied", attempt=item.attempt, candidate=candidate,
                   detail=f"candidate {candidate[:12]} = {parent[:12]} + patch "
                          f"{item.patch[:12]}")
        item.recorded, item.fresh = candidate, False

    def _commit(self, item: Item) -> None:
        ctx = self.ctx
        assert item.candidate is not None and item.parent is not None
        verdict = item.verdict or Verdict(Outcome.OK)
        # The gate: only a candidate that passed and whose parent is the current tip.
        if item.parent != ctx.ledger.integration_tip():
            raise AssertionError(f"{item.ws}: candidate {item.candidate[:12]} is not on the "
                                 "integration tip")
        # [queued ->] applied -> verified -> committed are decided here together: ONE ledger
        # transaction, each still its own ledger commit (ledger/writer.py says why a crash
        # cannot split or misstate them).
        if item.fresh:  # queued, nothing recorded since: no need to wait for that write
            state, recorded = "queued", None
        else:
            rec = ctx.ledger.state(item.ws)
            assert rec is not None
            state, recorded = rec.state, rec.candidate
        steps: list[Step] = []
        if state not in ("applied", "verified") or recorded != item.candidate:
            if state in ("applied", "verified"):
                steps.append(Step("queued", summary=f"the queue made a new candidate on "
                                                    f"{item.parent[:12]}: re-apply"))
            steps.append(Step("applied", candidate=item.candidate,
                              summary=f"candidate {item.candidate[:12]} = {item.parent[:12]} "
                                      f"+ patch {item.patch[:12]}"))
        if steps or state == "applied":
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
        self._set_ref(item, None)

    def _conflict(self, item: Item, base: str, conflicts: list[str]) -> None:
        ctx = self.ctx
        shown = ", ".join(conflicts[:20]) + (" ..." if len(conflicts) > 20 else "")
        rec = ctx.ledger.state(item.ws)
        if item.candidate is not None:
            self._set_ref(item, None)
            item.candidate = None
        if rec is not None and rec.state in ("applied", "verified"):
            ctx.record(item.ws, "queued", attempt=item.attempt,
                       detail=f"the queue re-applies it on {base[:12]}")
        ctx.record(item.ws, "quarantined", attempt=item.attempt, reason="conflict",
                   detail=f"conflicts with the integration tip {base[:12]} in: {shown}",
                   evidence={"conflicts.txt": ("\n".join(conflicts) + "\n").encode(),
                             "conflicts.diff3": conflict_evidence(ctx.repo, item.patch, base)})


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
