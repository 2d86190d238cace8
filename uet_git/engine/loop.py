"""The run loop (``Engine``): N worker threads (each runs one workstream at a time through
``pipeline``; the tools are subprocesses), ONE integrator thread (``[verify] window = 1``) or
the verification queue (``engine/queue.py``: speculative candidates judged on verifier
threads), and the loop in the calling thread, which alone owns the Scheduler and the queue and
decides what starts next.

Slots: ``jobs`` tools at most; a verification takes one of ``[verify] jobs`` slots or a worker
slot no tool runs in (tools first: a ready tool is never kept waiting by a speculative
verification). Workers and the integrator
write their own transitions to the ledger (it is thread-safe) and report back through one event
queue. A set cancel event (Ctrl-C, see ``interrupt``) starts nothing new; running tool groups
are terminated and what was recorded stays recorded.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from uet_git.engine.context import RunContext
from uet_git.engine.integrator import IntegrationOutcome, integrate
from uet_git.engine.pipeline import WorkerOutcome, recheck_patch, run_workstream
from uet_git.engine.queue import Job, Progress, VerifyQueue, run_job
from uet_git.engine.scheduler import Scheduler
from uet_git.engine.seed import seed
from uet_git.engine.slots import make_pool as make_pool  # the run's pool (callers import it here)
from uet_git.engine.verdicts import from_ledger
from uet_git.engine.verify import checks_at
from uet_git.ledger.log import read_ledger
from uet_git.ledger.query import WsRecord
from uet_git.plan.overlap import implicit_edges


@dataclass
class _Event:
    kind: str  # "worker" | "integrator" | "verify"
    worker: int | None
    ws: str
    outcome: Any = None
    error: BaseException | None = None


class _Thread:
    """A long-lived thread with an inbox; runs one job at a time."""

    def __init__(self, name: str, events: queue.Queue[_Event]) -> None:
        self.inbox: queue.Queue[Callable[[], _Event] | None] = queue.Queue()
        self.events = events
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            job = self.inbox.get()
            if job is None:
                return
            self.events.put(job())

    def stop(self) -> None:
        self.inbox.put(None)


@dataclass
class Engine:
    """The run loop: the calling thread alone owns the Scheduler and decides what starts next;
    ``jobs`` worker threads and one integrator thread run the jobs it hands them and report
    back through one event queue. ``after_commit`` runs in the loop after each committed
    workstream (``--land continuous`` lands there)."""

    ctx: RunContext
    scheduler: Scheduler
    jobs: int
    after_commit: Callable[[], None] | None = None
    attempts: dict[str, int] = field(default_factory=dict)
    rechecks: dict[str, tuple[str, str]] = field(default_factory=dict)  # ws -> (patch, state)
    tip_after: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    internal_errors: list[str] = field(default_factory=list)
    spent: dict[str, float] = field(default_factory=dict)  # seconds, worker + integrator
    queue: VerifyQueue | None = None  # the verification queue (None: [verify] window = 1)
    took: tuple[float, int] = (0.0, 0)  # seconds and count of integrations so far

    def __post_init__(self) -> None:
        self.events: queue.Queue[_Event] = queue.Queue()
        self.workers = [_Thread(f"uet-worker-{i}", self.events) for i in range(self.jobs)]
        self.free = list(range(self.jobs))
        self.integrator = _Thread("uet-integrator", self.events)
        self.integrating: str | None = None
        self.verifiers: list[_Thread] = []
        self.free_verifiers: list[int] = []
        self.verify_slots = self.ctx.config.verify.jobs
        if self.queue is not None:
            # Verify once: a worker's acceptance runs on the queue's tail including the
            # candidates handed to the workers before it (the queue keeps them), so workers
            # whose tools end together judge the trees the queue will make in that order.
            self.ctx.tail_candidate = self.queue.worker_tail  # type: ignore[method-assign]

    # -- jobs (run in worker / integrator threads) ---------------------------------------------

    def _worker_job(self, idx: int, ws_id: str, base: str) -> Callable[[], _Event]:
        ctx = self.ctx
        attempt = self.attempts.get(ws_id, 1)
        recheck = self.rechecks.pop(ws_id, None)

        def job() -> _Event:
            try:
                if ctx.executor is not None:  # a distributed run: engine/executor.py
                    out = ctx.executor.run(ctx, ws_id, worker=idx, base=base, attempt=attempt,
                                           recheck=recheck)
                elif recheck is not None:
                    out = recheck_patch(ctx, ws_id, worker=idx, attempt=attempt,
                                        patch=recheck[0], state=recheck[1])
                else:
                    out = run_workstream(ctx, ws_id, worker=idx, base=base, attempt=attempt)
                return _Event("worker", idx, ws_id, out)
            except BaseException as exc:  # recorded as internal-error by the loop
                return _Event("worker", idx, ws_id, None, exc)

        return job

    def _integrator_job(self, ws_id: str) -> Callable[[], _Event]:
        def job() -> _Event:
            try:
                return _Event("integrator", None, ws_id, integrate(self.ctx, ws_id))
            except BaseException as exc:
                return _Event("integrator", None, ws_id, None, exc)

        return job

    def _verify_job(self, idx: int, job: Job) -> Callable[[], _Event]:
        assert self.queue is not None
        checks, cache = self.queue.checks, self.queue.cache

        def run() -> _Event:
            try:
                verdict, seconds = run_job(self.ctx, checks, cache, job, verifier=idx)
                return _Event("verify", idx, job.ws, (job, verdict, seconds))
            except BaseException as exc:
                return _Event("verify", idx, job.ws, (job, None, 0.0), exc)

        return run

    # -- the loop ------------------------------------------------------------------------------

    def _base_for(self, ws_id: str) -> str:
        if self.scheduler.deterministic:
            anchor = self.scheduler.base_anchor(ws_id)
            if anchor is None:
                return self.ctx.ledger.base
            return self.tip_after.get(anchor) or self.ctx.ledger.integration_tip()
        return self.ctx.ledger.integration_tip()

    def _dispatch(self) -> None:
        if self.ctx.cancel.is_set():
            return
        while self.free and self.scheduler.has_ready() and self._tool_room():
            ws_id = self.scheduler.pop_ready(free=len(self.free))
            if ws_id is None:
                break
            tool = self.ctx.ws(ws_id).tool
            if ws_id not in self.rechecks and self.ctx.breaker.is_open(tool):
                self._breaker_quarantine([ws_id], tool)
                continue
            idx = self.free.pop(0)
            self.workers[idx].inbox.put(self._worker_job(idx, ws_id, self._base_for(ws_id)))
        if self.queue is not None:
            self._pump_queue()
        elif self.integrating is None:
            nxt = self.scheduler.next_to_integrate()
            if nxt is not None:
                self.integrating = nxt
                self.integrator.inbox.put(self._integrator_job(nxt))

    def _tool_room(self) -> bool:
        """A tool may start: verifications beyond ``[verify] jobs`` use idle worker slots."""
        borrowed = max(0, self.queue.running - self.verify_slots) if self.queue else 0
        return len(self.free) > borrowed

    def _pump_queue(self) -> None:
        q = self.queue
        assert q is not None
        while (nxt := self.scheduler.next_to_enqueue()) is not None:
            q.add(nxt)
        self._progress(q.step())
        room = self.verify_slots + len(self.free) - q.running
        for job in q.jobs(max(0, room)):
            if not self.free_verifiers:
                self.free_verifiers.append(len(self.verifiers))
                self.verifiers.append(_Thread(f"uet-verifier-{len(self.verifiers)}",
                                              self.events))
            idx = self.free_verifiers.pop(0)
            self.verifiers[idx].inbox.put(self._verify_job(idx, job))

    def _progress(self, prog: Progress) -> None:
        for ws_id in prog.committed:
            rec = self.ctx.ledger.state(ws_id)
            self.tip_after[ws_id] = rec.candidate if rec and rec.candidate else \
                self.ctx.ledger.integration_tip()
            self.scheduler.committed(ws_id)
            if self.after_commit is not None:
                self.after_commit()
        for ws_id in prog.quarantined:
            self._block_dependents(ws_id)

    def _busy(self) -> bool:
        return len(self.free) < self.jobs or self.integrating is not None or \
            (self.queue is not None and self.queue.running > 0)

    def run(self) -> None:
        try:
            self._loop()
        except BaseException:
            # The loop itself failed (the ledger refused a write, a bug): stop the tools and
            # let the threads finish what they record before the error goes up.
            self.ctx.cancel.set()
            deadline = time.monotonic() + 60
            while self._busy() and time.monotonic() < deadline:
                try:
                    ev = self.events.get(timeout=0.25)
                except queue.Empty:
                    continue
                if ev.kind == "worker" and ev.worker is not None:
                    self.free.append(ev.worker)
                elif ev.kind == "verify" and self.queue is not None:
                    self.queue.running -= 1
                else:
                    self.integrating = None
            self._stop_threads()
            raise

    def _loop(self) -> None:
        last_tick = time.monotonic()
        told = False
        while True:
            if self.ctx.cancel.is_set() and not told:
                told = True
                self.ctx.observer.message("interrupted: stopping the running tools (Ctrl-C "
                                          "again to quit at once; `uet resume` continues)")
            self._dispatch()
            if not self._busy() and (self.scheduler.finished() or self.ctx.cancel.is_set()):
                break
            try:
                ev = self.events.get(timeout=0.25)
            except queue.Empty:
                if time.monotonic() - last_tick > 1.0:
                    self.ctx.observer.tick()
                    last_tick = time.monotonic()
                continue
            self._handle(ev)
        self._stop_threads()
        if self.ctx.cancel.is_set():
            self.interrupted = True

    def _stop_threads(self) -> None:
        for t in [*self.workers, self.integrator, *self.verifiers]:
            t.stop()
        if self.queue is not None and self.queue.running == 0:
            self.queue.clear_refs()  # nothing in flight: no candidate ref outlives the loop

    def _handle_verify(self, ev: _Event) -> None:
        assert self.queue is not None and ev.worker is not None
        self.free_verifiers.append(ev.worker)
        self.free_verifiers.sort()
        job, verdict, seconds = ev.outcome
        if ev.error is not None or verdict is None:
            self.queue.running -= 1
            if self.ctx.cancel.is_set():
                self.queue.cancelled(job)
                return
            self.queue.drop(ev.ws)
            self._internal_error(ev.ws, ev.error or RuntimeError("no verdict"))
            return
        self.spent[ev.ws] = self.spent.get(ev.ws, 0.0) + seconds
        self._integration_took(seconds)
        self._progress(self.queue.finish(job, verdict, seconds))

    def _integration_took(self, seconds: float) -> None:
        """What the scheduler expects a commit in flight to take: the mean so far."""
        total, n = self.took
        self.took = (total + seconds, n + 1)
        self.scheduler.unlock_estimate = (total + seconds) / (n + 1)

    def _handle(self, ev: _Event) -> None:
        if ev.kind == "verify":
            self._handle_verify(ev)
            return
        if ev.kind == "worker":
            assert ev.worker is not None
            self.free.append(ev.worker)
            self.free.sort()
            if self.queue is not None and (ev.error is not None or ev.outcome is None
                                           or ev.outcome.state != "queued"):
                rec = self.ctx.ledger.state(ev.ws)  # its patch is ahead of no one now
                self.queue.forget(rec.patch if rec is not None else None)
            if ev.error is not None and self.ctx.cancel.is_set():
                self.scheduler.requeue(ev.ws)  # interrupted, not failed: resume redoes it
                return
            if ev.error is not None:
                self._internal_error(ev.ws, ev.error)
                return
            out: WorkerOutcome = ev.outcome
            self.spent[ev.ws] = self.spent.get(ev.ws, 0.0) + out.duration
            if out.state == "queued":
                self.scheduler.worker_done(ev.ws, queued=True)
            elif out.state == "quarantined":
                self.scheduler.worker_done(ev.ws, queued=False)
                self._block_dependents(ev.ws)
                tool = self.ctx.ws(ev.ws).tool
                if out.tool_failed and self.ctx.breaker.is_open(tool):
                    self._open_breaker(tool)
            else:  # cancelled: nothing recorded, resume will run it
                self.scheduler.requeue(ev.ws)
        else:
            self.integrating = None
            if ev.error is not None and self.ctx.cancel.is_set():
                self.scheduler.state[ev.ws] = "queued"  # resume continues from the ledger
                return
            if ev.error is not None:
                self._internal_error(ev.ws, ev.error)
                return
            res: IntegrationOutcome = ev.outcome
            self.spent[ev.ws] = self.spent.get(ev.ws, 0.0) + res.duration
            self._integration_took(res.duration)
            if res.state == "committed":
                self.tip_after[ev.ws] = res.tip
                self.scheduler.committed(ev.ws)
                if self.after_commit is not None:
                    self.after_commit()
            elif res.state == "quarantined":
                self._block_dependents(ev.ws)
            else:  # cancelled mid-verification: stays applied, resume continues it
                self.scheduler.state[ev.ws] = "queued"

    def _internal_error(self, ws_id: str, exc: BaseException) -> None:
        if os.environ.get("UET_DEBUG"):
            traceback.print_exception(exc)
        msg = f"{type(exc).__name__}: {exc}"
        self.internal_errors.append(f"{ws_id}: {msg}")
        rec = self.ctx.ledger.state(ws_id)
        attempt = self.attempts.get(ws_id, 1)
        if rec is not None and rec.attempt:
            attempt = max(attempt, rec.attempt) if rec.state not in ("quarantined",) \
                else rec.attempt + 1
        try:
            if rec is None or rec.state not in ("committed", "dropped", "rolled-back"):
                self.ctx.record(ws_id, "quarantined", attempt=attempt, reason="internal-error",
                                detail=f"uet failed on this workstream: {msg}")
        except Exception as exc2:  # the ledger itself failed: stop cleanly, keep what is there
            self.ctx.observer.message(f"cannot record the internal error of {ws_id}: {exc2}")
            self.ctx.cancel.set()
        self.scheduler.worker_done(ws_id, queued=False)
        self._block_dependents(ws_id)

    def _block_dependents(self, ws_id: str) -> None:
        """Mark ``ws_id`` failed and record its not-started transitive dependents blocked."""
        blocked = self.scheduler.failed(ws_id)
        rec = self.ctx.ledger.state(ws_id)
        why = f"{rec.reason}" if rec is not None and rec.reason else "failed"
        for dep in blocked:
            cur = self.ctx.ledger.state(dep)
            if cur is not None and cur.state in ("blocked", "quarantined", "dropped",
                                                 "committed", "rolled-back"):
                continue
            self.ctx.record(dep, "blocked", attempt=self.attempts.get(dep, 1),
                            detail=f"dependency-quarantined: {ws_id} is quarantined ({why})",
                            shown_reason="dependency-quarantined",
                            trailers={"Uet-Blocked-By": ws_id,
                                      "Uet-Block-Reason": "dependency-quarantined"})

    def _open_breaker(self, tool: str) -> None:
        ids = [i for i in self.scheduler.plan.ids if self.ctx.ws(i).tool == tool]
        taken = self.scheduler.take_unstarted(ids)
        self._breaker_quarantine(taken, tool, taken_already=True)

    def _breaker_quarantine(self, ids: list[str], tool: str, taken_already: bool = False) -> None:
        for ws_id in ids:
            if not taken_already:
                self.scheduler.state[ws_id] = "failed"
            cur = self.ctx.ledger.state(ws_id)
            if cur is not None and cur.state in ("quarantined", "dropped", "committed"):
                continue
            attempt = self.attempts.get(ws_id, 1)
            self.ctx.record(ws_id, "quarantined", attempt=attempt, reason="breaker-open",
                            detail=f"circuit breaker open for tool {tool}: "
                                   f"{self.ctx.breaker.threshold} consecutive failures; "
                                   "not started")
        for ws_id in ids:
            self._block_dependents(ws_id)


def engine_for(ctx: RunContext, include: set[str], jobs: int, *, deterministic: bool,
               weights: Mapping[str, float], records: Mapping[str, WsRecord],
               retry: set[str], after_commit: Callable[[], None] | None = None) -> Engine:
    """An Engine over ``include`` seeded from what the ledger recorded (``records``; empty
    for a new run). ``retry``: quarantined or blocked workstreams that get a new attempt."""
    plan = ctx.plan
    start = seed(plan, include, records, retry)
    soft = [(a, b) for a, b, _ in implicit_edges(plan, list(plan.workstreams.values()))] \
        if ctx.config.run.predicted_conflicts == "serialise" else []
    sched = Scheduler(plan, plan.weights(weights), deterministic=deterministic,
                      committed=start.committed, failed=start.failed, queued=start.queued,
                      ready=start.rechecks, include=include, soft=soft,
                      jobs=jobs)
    engine = Engine(ctx, sched, jobs, after_commit, attempts=start.attempts,
                    rechecks=start.rechecks, tip_after=start.tip_after,
                    queue=make_queue(ctx, jobs))
    for ws_id in start.block_dependents_of:
        engine._block_dependents(ws_id)
    return engine




def make_queue(ctx: RunContext, jobs: int) -> VerifyQueue | None:
    """The verification queue of a run (None: ``[verify] window = 1``, or ``"auto"`` when no
    workstream has acceptance commands and there are no pre-merge hooks: the one-at-a-time
    integrator), its verdict cache derived from what the run's ledger recorded. ``"auto"``
    (the default): the window starts at the run's slots (``jobs`` + ``[verify] jobs``) and
    grows to twice that: a candidate made ahead of a free slot costs a tree merge, and a
    worker judges its patch on the queue's tail only when every patch ahead has one."""
    window = ctx.config.verify.window
    if window == 1:
        return None
    checks = checks_at(ctx.repo, ctx.ledger.base, ctx.config)
    if window == "auto" and not checks.hooks and \
            not any(ws.acceptance for ws in ctx.plan.workstreams.values()):
        # Nothing is ever judged on a candidate: speculation buys nothing, and the integrator
        # records its transitions on its own thread while the loop keeps starting tools (the
        # queue commits in the loop thread: B2's 200-workstream DAGs were slower with it).
        return None
    slots = max(1, jobs + ctx.config.verify.jobs)
    start, most = (slots, min(256, 2 * slots)) if window == "auto" else (window, window)
    log = read_ledger(ctx.repo, ctx.run_id, tip=ctx.ledger.tip)
    cache = from_ledger(ctx.repo, log.events, ctx.plan.workstreams, checks.base, checks.hooks)
    return VerifyQueue(ctx, checks, cache, window=start, max_window=most)
