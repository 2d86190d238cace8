"""``uet run``: spec -> plan -> ledger -> workers + integrator -> land.

Threads: N worker threads (each runs one workstream at a time through ``pipeline``; the tools
are subprocesses), ONE integrator thread, and the run loop in the calling thread, which alone
owns the Scheduler and decides what starts next. Workers and the integrator write their own
transitions to the ledger (it is thread-safe) and report back through one event queue.

Ctrl-C (SIGINT) sets the cancel event: no new tool starts, running tool groups are terminated,
what was recorded stays recorded, and the run is left for ``uet resume`` (exit 130).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uet_git.engine.integrator import IntegrationOutcome, integrate
from uet_git.engine.options import (
    RunOptions,
    RunResult,
    dry_run_requested,
    resolve_jobs,
    resolve_land,
)
from uet_git.engine.pipeline import (
    Breaker,
    RunContext,
    WorkerOutcome,
    crash_point,
    recheck_patch,
    run_workstream,
)
from uet_git.engine.report import Reporter
from uet_git.engine.scheduler import Scheduler
from uet_git.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_WORK_FAILED, UetError
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.query import WsRecord
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import Plan, build_plan
from uet_git.spec.load import default_paths, load_config, load_workstreams
from uet_git.spec.models import Config, Workstream
from uet_git.workers.pool import WorktreePool
from uet_git.workers.tools import PRESETS, prepare_repo_for_tools

HISTORY_RUNS = 3  # earlier runs consulted for durations (each costs a ledger walk)


# --------------------------------------------------------------------------- inputs


def load_inputs(repo: Repo, options: RunOptions) -> tuple[Config, list[Workstream], list[str]]:
    """uet.toml and the workstreams; every spec error at once, as a UetError."""
    config = load_config(repo.workdir)
    paths = [Path(p) for p in options.paths] if options.paths else default_paths(repo.workdir,
                                                                                 config)
    for p in paths:
        if not p.exists():
            raise UetError(f"{p}: no such file or directory (workstream files are read from "
                           f"[run] workstreams in uet.toml, default `workstreams/`)")
    loaded = load_workstreams(paths)
    if loaded.errors:
        shown = [str(e) for e in loaded.errors[:20]]
        more = len(loaded.errors) - len(shown)
        raise UetError("\n".join(shown + ([f"... and {more} more"] if more > 0 else [])))
    if not loaded.workstreams:
        raise UetError(f"no workstreams found in {', '.join(map(str, paths))}")
    return config, loaded.workstreams, [str(w) for w in loaded.warnings]


def select_only(plan: Plan, only: Iterable[str] | None) -> set[str]:
    """The ids a run covers: ``only`` and everything they depend on."""
    if not only:
        return set(plan.ids)
    wanted = [i.strip() for item in only for i in str(item).split(",") if i.strip()]
    unknown = [i for i in wanted if i not in plan.workstreams]
    if unknown:
        raise UetError(f"--only: unknown workstream {', '.join(unknown)} "
                       f"(known: {', '.join(plan.ids[:10])}{' ...' if len(plan.ids) > 10 else ''})")
    out: set[str] = set()
    for i in wanted:
        out.add(i)
        out |= plan.ancestors(i)
    return out


def check_tools(plan: Plan, ids: Iterable[str], config: Config) -> list[str]:
    """An unknown tool, a shell workstream without a command or an AI tool without a prompt is
    invalid input (UetError, exit 2). An executable missing from PATH is returned as a warning:
    that workstream becomes ``tool-failed`` when it runs, and the rest of the run goes on."""
    from uet_git.workers.tools import check_tool

    problems, warnings = [], []
    for ws_id in sorted(ids, key=plan.index.__getitem__):
        ws = plan.workstreams[ws_id]
        problem = check_tool(ws, config)
        if problem:
            where = f"{ws.source}:{ws.id}" if ws.source else ws.id
            if problem.startswith("executable "):
                warnings.append(f"{where}: tool: {problem}; it will fail as tool-failed")
            else:
                problems.append(f"{where}: tool: {problem}")
    if problems:
        raise UetError("\n".join(problems))
    return warnings


def resolve_target(repo: Repo, options: RunOptions, config: Config) -> tuple[str, str]:
    """``(branch, its commit)``: --target, else uet.toml [run] target, else the branch checked
    out in the main worktree."""
    target = options.target or config.run.target
    if target is None:
        target = repo.current_branch()
        if target is None:
            if repo.rev_parse("HEAD") is None and not repo.list_refs("refs/heads/"):
                raise UetError(f"{repo.workdir}: the repository has no commits yet; commit "
                               "something first (uet works from a base commit)")
            raise UetError(f"{repo.workdir}: HEAD is detached; pass --target BRANCH "
                           "(or set [run] target in uet.toml)")
    target = target.removeprefix("refs/heads/")
    oid = repo.read_ref(f"refs/heads/{target}")
    if oid is None:
        if not repo.list_refs("refs/heads/"):
            raise UetError(f"{repo.workdir}: the repository has no commits yet; commit "
                           "something first (uet works from a base commit)")
        raise UetError(f"--target {target}: no such branch in {repo.workdir}")
    return target, oid


def history_weights(repo: Repo, plan: Plan, ids: Iterable[str]) -> dict[str, float]:
    """Durations measured by earlier runs (the worker's time, ``Uet-Worker-Seconds`` of the
    ``queued`` transition) for workstreams without an ``estimate``: the latest run that ran
    each id, reading at most HISTORY_RUNS runs."""
    from uet_git.engine.pipeline import WORKER_SECONDS

    missing = {i for i in ids if plan.workstreams[i].estimate is None}
    out: dict[str, float] = {}
    if not missing:
        return out
    try:
        runs = query.run_ids(repo)
    except UetError:
        return out
    for run in reversed(runs[-HISTORY_RUNS:]):
        try:
            events = query.history(repo, run)
        except Exception:  # an unreadable old run only costs us a weight
            continue
        found: dict[str, float] = {}
        for e in events:
            raw = e.trailers.get(WORKER_SECONDS)
            if e.ws in missing and e.to == "queued" and raw:
                with contextlib.suppress(ValueError):
                    found[e.ws] = max(float(raw), 0.01)
        out.update(found)
        missing -= set(found)
        if not missing:
            break
    return out


def plan_record(plan: Plan, jobs: int, weights: Mapping[str, float], warnings: list[str],
                ids: set[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """What ``plan.json`` of the ledger holds: the plan, and the workstreams themselves, so a
    resume runs exactly what was planned even if the files changed since."""
    data: dict[str, Any] = dict(plan.to_json(jobs, weights, warnings=warnings))
    data["workstreams"] = []
    for ws_id in plan.ids:
        ws = plan.workstreams[ws_id]
        d = ws.model_dump(mode="json")
        d["source"] = ws.source
        data["workstreams"].append(d)
    data["selected"] = [i for i in plan.ids if i in ids]
    data["options"] = dict(options)
    return data


def workstreams_from_record(record: Mapping[str, Any]) -> list[Workstream]:
    out = []
    for d in record.get("workstreams") or []:
        if not isinstance(d, dict):
            continue
        d = dict(d)
        source = d.pop("source", None)
        ws = Workstream.model_validate(d)
        ws._source = source
        out.append(ws)
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class _Event:
    kind: str  # "worker" | "integrator" | "error"
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
    ctx: RunContext
    scheduler: Scheduler
    jobs: int
    land_mode: str
    attempts: dict[str, int] = field(default_factory=dict)
    rechecks: dict[str, tuple[str, str]] = field(default_factory=dict)  # ws -> (patch, state)
    tip_after: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    landed_continuous: str | None = None
    land_messages: list[str] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)
    spent: dict[str, float] = field(default_factory=dict)  # seconds, worker + integrator

    def __post_init__(self) -> None:
        self.events: queue.Queue[_Event] = queue.Queue()
        self.workers = [_Thread(f"uet-worker-{i}", self.events) for i in range(self.jobs)]
        self.free = list(range(self.jobs))
        self.integrator = _Thread("uet-integrator", self.events)
        self.integrating: str | None = None

    # -- jobs (run in worker / integrator threads) ---------------------------------------------

    def _worker_job(self, idx: int, ws_id: str, base: str) -> Callable[[], _Event]:
        ctx = self.ctx
        attempt = self.attempts.get(ws_id, 1)
        recheck = self.rechecks.pop(ws_id, None)

        def job() -> _Event:
            try:
                if recheck is not None:
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
        while self.free and self.scheduler.has_ready():
            ws_id = self.scheduler.pop_ready()
            if ws_id is None:
                break
            tool = self.ctx.ws(ws_id).tool
            if ws_id not in self.rechecks and self.ctx.breaker.is_open(tool):
                self._breaker_quarantine([ws_id], tool)
                continue
            idx = self.free.pop(0)
            self.workers[idx].inbox.put(self._worker_job(idx, ws_id, self._base_for(ws_id)))
        if self.integrating is None:
            nxt = self.scheduler.next_to_integrate()
            if nxt is not None:
                self.integrating = nxt
                self.integrator.inbox.put(self._integrator_job(nxt))

    def _busy(self) -> bool:
        return len(self.free) < self.jobs or self.integrating is not None

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
                else:
                    self.integrating = None
            for t in [*self.workers, self.integrator]:
                t.stop()
            raise

    def _loop(self) -> None:
        last_tick = time.monotonic()
        told = False
        while True:
            if self.ctx.cancel.is_set() and not told:
                told = True
                self.ctx.reporter.message("interrupted: stopping the running tools (Ctrl-C "
                                          "again to quit at once; `uet resume` continues)")
            self._dispatch()
            if not self._busy() and (self.scheduler.finished() or self.ctx.cancel.is_set()):
                break
            try:
                ev = self.events.get(timeout=0.25)
            except queue.Empty:
                if time.monotonic() - last_tick > 1.0:
                    self.ctx.reporter.tick()
                    last_tick = time.monotonic()
                continue
            self._handle(ev)
        for t in [*self.workers, self.integrator]:
            t.stop()
        if self.ctx.cancel.is_set():
            self.interrupted = True

    def _handle(self, ev: _Event) -> None:
        if ev.kind == "worker":
            assert ev.worker is not None
            self.free.append(ev.worker)
            self.free.sort()
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
            if res.state == "committed":
                self.tip_after[ev.ws] = res.tip
                self.scheduler.committed(ev.ws)
                if self.land_mode == "continuous":
                    self._land_now()
            elif res.state == "quarantined":
                self._block_dependents(ev.ws)
            else:  # cancelled mid-verification: stays applied, resume continues it
                self.scheduler.state[ev.ws] = "queued"

    def _internal_error(self, ws_id: str, exc: BaseException) -> None:
        if os.environ.get("UET_DEBUG"):
            import traceback

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
            self.ctx.reporter.message(f"cannot record the internal error of {ws_id}: {exc2}")
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

    def _land_now(self) -> None:
        from uet_git.commands.land import land

        try:
            res = land(self.ctx.repo, self.ctx.ledger)
        except UetError as exc:
            self.land_messages.append(str(exc))
            return
        if res.landed:
            self.landed_continuous = res.target_oid
        else:
            self.land_messages.append(res.message)


# --------------------------------------------------------------------------- running


class _Interrupt:
    """SIGINT/SIGTERM set the cancel event instead of raising in the middle of a transition."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, OSError):
                    self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.cancel.is_set() and signum == signal.SIGINT:
            # A second Ctrl-C: leave now. Everything recorded stays; `uet resume` stops the
            # tools still running and snapshots their worktrees.
            os._exit(EXIT_INTERRUPTED)
        self.cancel.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


def make_pool(repo: Repo, config: Config, jobs: int) -> WorktreePool:
    root = None
    if config.worktree.root:
        root = Path(config.worktree.root)
        if not root.is_absolute():
            root = repo.common_dir / root
    return WorktreePool(repo, root=root, size=jobs + 1, keep_ignored=config.worktree.keep_ignored,
                        include=list(config.worktree.include))


def drive(repo: Repo, ledger: Ledger, *, config: Config, plan: Plan, include: set[str],
          jobs: int, land_mode: str, deterministic: bool, keep_worktrees: bool,
          reporter: Reporter, weights: Mapping[str, float], records: Mapping[str, WsRecord],
          retry: set[str] | None = None, resumed: bool = False,
          warnings: Iterable[str] = (), reverify: Iterable[str] = ()) -> RunResult:
    """Run (or continue) ``ledger``'s run over ``include`` until nothing can progress, land,
    report. ``records`` are the states already in the ledger (empty for a new run)."""
    retry = retry or set()
    log_root = repo.uet_dir / "logs" / ledger.run
    pool = make_pool(repo, config, jobs)
    ctx = RunContext(repo=repo, ledger=ledger, config=config, plan=plan, pool=pool,
                     reporter=reporter, log_root=log_root, target=ledger.target,
                     breaker=Breaker(config.breaker.threshold), reverify=set(reverify))
    if any(plan.workstreams[i].tool in PRESETS for i in include):
        prepare_repo_for_tools(repo)
    reporter.start(ledger.run, [i for i in plan.ids if i in include], jobs=jobs,
                   target=ledger.target, base=ledger.base, resumed=resumed)
    reporter.seed({ws: r.state for ws, r in records.items() if ws in include})
    for w in warnings:
        reporter.message(f"warning: {w}")
    try:
        from uet_git.engine.resume import record_orphans

        record_orphans(ctx)
        engine = _engine_for(ctx, include, jobs, land_mode, deterministic, weights, records,
                             retry)
        with _Interrupt(ctx.cancel):
            engine.run()
        if engine.interrupted:
            try:
                ledger.event("run: interrupted",
                             "interrupted by a signal; `uet resume` continues it")
            except UetError as exc:
                reporter.message(f"could not record `run: interrupted`: {exc}")
            pool.close(remove=False)
            counts = _counts(ledger, include)
            msg = f"interrupted; continue with `uet resume {ledger.run}`"
            reporter.finish({"run": ledger.run, "exit_code": EXIT_INTERRUPTED, "counts": counts,
                             "landed": False, "message": msg},
                            _rows(ledger, plan, include, engine.spent))
            return RunResult(ledger.run, EXIT_INTERRUPTED, counts, False, msg)
        return _finish(ctx, engine, include, land_mode, keep_worktrees)
    finally:
        pool.close(remove=False)
        if not keep_worktrees:
            shutil.rmtree(log_root, ignore_errors=True)


def _engine_for(ctx: RunContext, include: set[str], jobs: int, land_mode: str,
                deterministic: bool, weights: Mapping[str, float],
                records: Mapping[str, WsRecord], retry: set[str]) -> Engine:
    plan = ctx.plan
    committed, failed, queued, rechecks = [], [], [], {}
    attempts: dict[str, int] = {}
    tip_after: dict[str, str] = {}
    hard_failed = {ws for ws, r in records.items()
                   if r.state in ("quarantined", "dropped", "rolled-back") and ws not in retry}
    for ws_id in plan.ids:
        rec = records.get(ws_id)
        if rec is None:
            continue
        st, att = rec.state, rec.attempt or 1
        if st == "committed":
            # Also outside ``include``: a retried workstream's other dependencies count.
            committed.append(ws_id)
            if rec.candidate:
                tip_after[ws_id] = rec.candidate
            continue
        if ws_id not in include:
            continue
        elif st in ("quarantined", "dropped", "rolled-back"):
            if ws_id in retry and st == "quarantined":
                attempts[ws_id] = att + 1
            else:
                failed.append(ws_id)
        elif st == "blocked":
            if ws_id in retry or not (plan.ancestors(ws_id) & hard_failed):
                attempts[ws_id] = att
            else:
                failed.append(ws_id)
        elif st in ("queued", "applied", "verified"):
            queued.append(ws_id)
            attempts[ws_id] = att
        elif st in ("created", "validated"):
            assert rec.patch is not None
            rechecks[ws_id] = (rec.patch, st)
            attempts[ws_id] = att
    sched = Scheduler(plan, plan.weights(weights), deterministic=deterministic,
                      committed=committed, failed=failed, queued=queued, ready=rechecks,
                      include=include)
    engine = Engine(ctx, sched, jobs, land_mode, attempts=attempts, rechecks=rechecks,
                    tip_after=tip_after)
    # Dependents of what failed before (a crash between a quarantine and its blocking).
    for ws_id in failed:
        if records[ws_id].state != "blocked":
            engine._block_dependents(ws_id)
    return engine


def _counts(ledger: Ledger, include: Iterable[str]) -> dict[str, int]:
    states = ledger.states()
    counts: dict[str, int] = {}
    for ws in include:
        s = states[ws].state if ws in states else "pending"
        counts[s] = counts.get(s, 0) + 1
    return dict(sorted(counts.items()))


def _rows(ledger: Ledger, plan: Plan, include: set[str],
          spent: Mapping[str, float] | None = None) -> list[list[str]]:
    """The status table; ``time`` is what this process spent on the workstream (worker and
    integrator), else the span the ledger recorded."""
    states = ledger.states()
    spent = spent or {}
    rows = []
    for ws in plan.ids:
        if ws not in include:
            continue
        r = states.get(ws)
        if r is None:
            rows.append([ws, "pending", "", "", ""])
            continue
        reason = r.reason or ("dependency-quarantined" if r.state == "blocked" else "")
        if ws in spent:
            took = f"{spent[ws]:.1f}s"
        else:
            took = f"{r.duration}s" if r.duration is not None else ""
        rows.append([ws, r.state, str(r.attempt or ""), reason, took])
    return rows


def _finish(ctx: RunContext, engine: Engine, include: set[str], land_mode: str,
            keep_worktrees: bool) -> RunResult:
    ledger, repo, reporter = ctx.ledger, ctx.repo, ctx.reporter
    counts = _counts(ledger, include)
    stuck = engine.scheduler.stuck()
    all_committed = counts.get("committed", 0) == len(include)
    landed = False
    messages: list[str] = []
    committed_any = ledger.integration_tip() != ledger.base
    if land_mode == "never":
        landed = all_committed
        messages.append(f"not landed (--land never): run `uet land {ledger.run}` to land "
                        f"refs/uet/integration/{ledger.run}")
    elif not committed_any:
        messages.append("nothing committed, nothing to land")
    else:
        crash_point("land")
        from uet_git.commands.land import land

        try:
            res = land(repo, ledger)
            landed, msg = res.landed, res.message
        except UetError as exc:
            landed, msg = False, str(exc)
        messages.append(msg)
    if stuck:
        messages.append(f"not run (dependencies outside this run): {', '.join(stuck)}")
    if engine.internal_errors:
        messages.append("internal errors: " + "; ".join(engine.internal_errors[:3]))
    ok = all_committed and (landed or land_mode == "never")
    exit_code = EXIT_OK if ok else EXIT_WORK_FAILED
    summary_line = ", ".join(f"{v} {k}" for k, v in counts.items())
    try:
        ledger.event("run: finish", f"{summary_line}\n" + "\n".join(messages),
                     trailers={"Uet-Exit": str(exit_code),
                               "Uet-Integration-Tip": ledger.integration_tip()})
    except UetError as exc:  # the run's results are recorded; only the summary event is lost
        reporter.message(f"could not record `run: finish`: {exc}")
    message = "; ".join(messages)
    ctx.pool.close(remove=not keep_worktrees)
    reporter.finish({"run": ledger.run, "exit_code": exit_code, "counts": counts,
                     "landed": landed, "target": ledger.target,
                     "integration": ledger.integration_tip(), "message": message},
                    _rows(ledger, ctx.plan, include, engine.spent))
    return RunResult(ledger.run, exit_code, counts, landed, message)


def print_dry_run(plan: Plan, include: set[str], jobs: int, target: str, base: str,
                  weights: Mapping[str, float], warnings: list[str], reporter: Reporter,
                  config: Config) -> dict[str, Any]:
    """What would run, in the order it would start; writes nothing."""
    from uet_git.workers.tools import resolve_tool

    w = plan.weights(weights)
    length, path = plan.critical_path(w)
    remaining = plan.remaining(w)  # once: inside the sort key it made the sort quadratic
    order = sorted(include, key=lambda i: (-remaining[i], plan.index[i]))
    lines = [f"dry run: {len(include)} workstreams, {jobs} workers, target {target} at "
             f"{base[:12]}; nothing is written",
             f"critical path ({length:g}): {' -> '.join(path)}",
             f"lower bound: {plan.lower_bound(jobs, w):g}"]
    waves = [[i for i in w if i in include] for w in plan.waves()]
    for n, wave in enumerate(w for w in waves if w):
        lines.append(f"wave {n}: {', '.join(wave)}")
    items = []
    for ws_id in plan.ids:
        if ws_id not in include:
            continue
        ws = plan.workstreams[ws_id]
        try:
            spec = resolve_tool(ws, config)
            tool = getattr(spec, "name", ws.tool)
        except Exception:
            tool = ws.tool
        cmd = ws.command if isinstance(ws.command, str) else " ".join(ws.command or [])
        deps = ", ".join(plan.deps[ws_id]) or "-"
        lines.append(f"  {ws_id}: tool {tool}{': ' + cmd if cmd else ''}; after {deps}")
        items.append({"id": ws_id, "tool": tool, "command": ws.command,
                      "depends_on": plan.deps[ws_id]})
    lines.extend(f"warning: {w}" for w in warnings)
    if reporter.mode == "json":
        reporter._emit_json({"event": "dry-run", "order": order, "workstreams": items,
                             "critical_path": path, "jobs": jobs, "target": target,
                             "base": base, "warnings": warnings})
    else:
        reporter._write("\n".join(lines) + "\n")
    return {"order": order}


def execute_run(repo: Repo, options: RunOptions) -> RunResult:
    """``uet run``: plan, record, run, land, report (see the module doc)."""
    config, workstreams, spec_warnings = load_inputs(repo, options)
    plan = build_plan(workstreams)
    include = select_only(plan, options.only)
    tool_warnings = check_tools(plan, include, config)
    jobs = resolve_jobs(options.jobs, config)
    land_mode = resolve_land(options.land, config)
    deterministic = options.deterministic or config.run.deterministic
    target, base = resolve_target(repo, options, config)
    reporter = Reporter(options.output)
    weights = history_weights(repo, plan, include)
    from uet_git.plan.overlap import predict_conflicts

    warnings = spec_warnings + tool_warnings + list(
        predict_conflicts(plan, list(plan.workstreams.values())))
    if options.only:
        named = {i.strip() for item in options.only for i in str(item).split(",")}
        added = [i for i in plan.ids if i in include and i not in named]
        if added:
            warnings.append(f"--only: also running what they depend on: {', '.join(added)}")
    if dry_run_requested(options):
        print_dry_run(plan, include, jobs, target, base, weights, warnings, reporter, config)
        return RunResult(None, EXIT_OK, {"planned": len(include)}, False, "dry run")
    record = plan_record(plan, jobs, weights, warnings, include, {
        "jobs": jobs, "land": land_mode, "deterministic": deterministic,
        "only": sorted(include) if options.only else None,
    })
    with Ledger.create(repo, base=base, target=target, plan=record,
                       config=config.model_dump(mode="json", by_alias=True)) as ledger:
        return drive(repo, ledger, config=config, plan=plan, include=include, jobs=jobs,
                     land_mode=land_mode, deterministic=deterministic,
                     keep_worktrees=options.keep_worktrees, reporter=reporter, weights=weights,
                     records={}, warnings=warnings)
