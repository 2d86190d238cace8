"""``uet run``: spec -> plan -> ledger -> the run loop (workers + integrator) -> land -> the
outcome. ``drive`` runs (or continues, for ``uet resume``) a run whose ledger is open until
nothing can progress, then finishes it: lands it (``--land end``), records ``run: finish`` and
tells the observer the status table.

Ctrl-C (SIGINT) sets the cancel event: no new tool starts, running tool groups are terminated,
what was recorded stays recorded, and the run is left for ``uet resume`` (exit 130).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterable, Mapping

from uet_git.commands.backend import BACKEND, Backend
from uet_git.commands.executorconfig import (
    ENV,
    close_executor,
    finish_executor,
    fold_executor,
    wants_executor,
)
from uet_git.commands.land import land, landing_blockers
from uet_git.engine.context import Breaker, RunContext, crash_point
from uet_git.engine.dryrun import dry_run_view
from uet_git.engine.events import Observer
from uet_git.engine.inputs import (
    check_tools,
    checks_config,
    history_weights,
    load_inputs,
    plan_record,
    resolve_target,
    select_only,
)
from uet_git.engine.interrupt import CancelOnSignals
from uet_git.engine.loop import Engine, engine_for
from uet_git.engine.options import (
    RunOptions,
    RunResult,
    dry_run_requested,
    resolve_jobs,
    resolve_land,
)
from uet_git.engine.orphans import record_orphans
from uet_git.engine.slots import make_pool
from uet_git.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_WORK_FAILED, UetError
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.query import WsRecord
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import Plan, build_plan
from uet_git.plan.overlap import predict_conflicts
from uet_git.spec.load import seed_env_notices
from uet_git.spec.models import Config
from uet_git.workers.sandbox import available as sandbox_unavailable
from uet_git.workers.tools import PRESETS, config_dir_notices, prepare_repo_for_tools


def execute_run(repo: Repo, options: RunOptions, observer: Observer) -> RunResult:
    """``uet run``: plan, record, run, land, report (see the module doc). A dry run writes
    nothing and returns what it would do in ``RunResult.dry_run`` for the caller to show."""
    config, workstreams, spec_warnings = load_inputs(repo, options)
    # on the checkout's [sandbox] (nearly always the base's; the probe is harmless if not),
    # unless the command line or UET_EXECUTOR may send the tools to a scheduler
    probing = (not dry_run_requested(options) and options.executor is None
               and not os.environ.get(ENV, "").strip() and probe_sandbox_early(config))
    plan = build_plan(workstreams)
    include = select_only(plan, options.only)
    jobs = resolve_jobs(options.jobs, config)
    land_mode = resolve_land(options.land, config)
    deterministic = options.deterministic or config.run.deterministic
    target, base = resolve_target(repo, options, config)
    config, checks_warning = checks_config(repo, config, base,
                                           from_checkout=options.checks_from_checkout)
    config = fold_executor(config, options)  # recorded: a resume reconnects alike
    if config.executor.address is not None:
        backend(config).check_executor(repo, config.executor)
    config.worktree.keep = config.worktree.keep and not options.fresh_worktrees
    tool_warnings = check_tools(plan, include, config)
    weights = history_weights(repo, plan, include)
    warnings = ([checks_warning] if checks_warning else []) + spec_warnings + tool_warnings + list(
        predict_conflicts(plan, list(plan.workstreams.values())))
    if options.only:
        named = {i.strip() for item in options.only for i in str(item).split(",")}
        added = [i for i in plan.ids if i in include and i not in named]
        if added:
            warnings.append(f"--only: also running what they depend on: {', '.join(added)}")
    if dry_run_requested(options):
        view = dry_run_view(plan, include, jobs, target, base, weights, warnings, config,
                            repo.workdir)
        return RunResult(None, EXIT_OK, {"planned": len(include)}, False, "dry run",
                         dry_run=view)
    record = plan_record(plan, jobs, weights, warnings, include, {
        "jobs": jobs, "land": land_mode, "deterministic": deterministic,
        "only": sorted(include) if options.only else None,
    })
    if not probing:
        probe_sandbox_early(config)
    with Ledger.create(repo, base=base, target=target, plan=record,
                       config=config.model_dump(mode="json", by_alias=True)) as ledger:
        return drive(repo, ledger, config=config, plan=plan, include=include, jobs=jobs,
                     land_mode=land_mode, deterministic=deterministic,
                     keep_worktrees=options.keep_worktrees, observer=observer,
                     weights=weights, records={}, warnings=warnings)


def backend(config: Config) -> Backend:
    """The Dask back-end for a run whose ``[executor]`` names a scheduler (``BACKEND``)."""
    load = BACKEND.get()
    if load is None:
        raise UetError(f"[executor] address {config.executor.address or '(UET_EXECUTOR)'}: "
                       "a run on a Dask scheduler is started by the uet command (uet run, "
                       "uet resume); this caller set no back-end (commands/backend.py)")
    return load()


def probe_sandbox_early(config: Config) -> bool:
    """Start the once-per-process bubblewrap probe (``sandbox.available``) in a thread, so
    that it runs while the run is planned and the ledger written instead of before the first
    tool: the run's context asks for it later, and waits for the same answer. True when
    started."""
    if config.sandbox.mode == "bwrap" and config.executor.address is None:
        threading.Thread(target=sandbox_unavailable, name="uet-sandbox-probe",
                         daemon=True).start()
        return True
    return False


def drive(repo: Repo, ledger: Ledger, *, config: Config, plan: Plan, include: set[str],
          jobs: int, land_mode: str, deterministic: bool, keep_worktrees: bool,
          observer: Observer, weights: Mapping[str, float], records: Mapping[str, WsRecord],
          retry: set[str] | None = None, resumed: bool = False,
          warnings: Iterable[str] = (), reverify: Iterable[str] = ()) -> RunResult:
    """Run (or continue) ``ledger``'s run over ``include`` until nothing can progress, land,
    report. ``records`` are the states already in the ledger (empty for a new run)."""
    log_root = repo.uet_dir / "logs" / ledger.run
    pool = make_pool(repo, config, jobs)
    ctx = RunContext(repo=repo, ledger=ledger, config=config, plan=plan, pool=pool,
                     observer=observer, log_root=log_root, target=ledger.target,
                     breaker=Breaker(config.breaker.threshold), reverify=set(reverify))
    if any(plan.workstreams[i].tool in PRESETS for i in include):
        prepare_repo_for_tools(repo)
    observer.start(ledger.run, [i for i in plan.ids if i in include], jobs=jobs,
                   target=ledger.target, base=ledger.base, resumed=resumed)
    observer.seed({ws: r.state for ws, r in records.items() if ws in include})
    for w in warnings:
        observer.message(f"warning: {w}")
    _say_what_stands_in_the_way(ctx, land_mode)
    after_commit = None
    if land_mode == "continuous":
        def after_commit() -> None:
            ctx.guard.excused(lambda: _land_quietly(repo, ledger))
    try:
        if wants_executor(config):  # else local threads (ctx.executor None)
            ctx.executor = backend(config).open_executor(repo, ledger.run, config, observer)
        record_orphans(ctx)
        engine = engine_for(ctx, include, jobs, deterministic=deterministic, weights=weights,
                            records=records, retry=retry or set(), after_commit=after_commit)
        with CancelOnSignals(ctx.cancel):
            engine.run()
        finish_executor(ctx, engine.interrupted)
        if engine.interrupted:
            return _interrupted(ctx, engine, include)
        return _finish(ctx, engine, include, land_mode, keep_worktrees)
    finally:
        close_executor(ctx)
        pool.close(remove=False)
        if not keep_worktrees:
            shutil.rmtree(log_root, ignore_errors=True)


def _say_what_stands_in_the_way(ctx: RunContext, land_mode: str) -> None:
    """One line each, at run start: tools run unsandboxed although the sandbox was asked for;
    the target's checkout is in a state that will refuse the landing."""
    for notice in [*seed_env_notices(os.environ),
                   *config_dir_notices(list(ctx.plan.workstreams.values()), ctx.config)]:
        ctx.observer.message(notice)
    if ctx.config.sandbox.mode == "bwrap" and not ctx.sandboxed:
        ctx.observer.message(f"sandbox: bwrap unavailable ({sandbox_unavailable()}); tools run "
                             "unsandboxed, tampering is detected after each tool")
    if land_mode != "never" and ctx.target:
        blockers = landing_blockers(ctx.repo, ctx.target)
        if blockers:
            ctx.observer.message(f"warning: landing on {ctx.target} will be refused unless "
                                 f"this changes before the run ends: {'; '.join(blockers)}")


def _land_quietly(repo: Repo, ledger: Ledger) -> None:
    """``--land continuous``: land after each commit; what stops it is said by the landing at
    the end."""
    with contextlib.suppress(UetError):
        land(repo, ledger)


def _interrupted(ctx: RunContext, engine: Engine, include: set[str]) -> RunResult:
    ledger, observer = ctx.ledger, ctx.observer
    try:
        ledger.event("run: interrupted", "interrupted by a signal; `uet resume` continues it",
                     evidence=observer.ledger_evidence())
    except UetError as exc:
        observer.message(f"could not record `run: interrupted`: {exc}")
    ctx.pool.close(remove=False)
    counts = _counts(ledger, include)
    msg = f"interrupted; continue with `uet resume {ledger.run}`"
    observer.finish({"run": ledger.run, "exit_code": EXIT_INTERRUPTED, "counts": counts,
                     "landed": False, "message": msg},
                    _rows(ledger, ctx.plan, include, engine.spent))
    return RunResult(ledger.run, EXIT_INTERRUPTED, counts, False, msg)


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
    ledger, repo, observer = ctx.ledger, ctx.repo, ctx.observer
    counts = _counts(ledger, include)
    stuck = engine.scheduler.stuck()
    all_committed = counts.get("committed", 0) == len(include)
    landed = False
    messages: list[str] = []
    committed_any = ledger.integration_tip() != ledger.base
    if land_mode == "never":
        messages.append(f"not landed (--land never): run `uet land {ledger.run}` to land "
                        f"refs/uet/integration/{ledger.run}")
    elif not committed_any:
        messages.append("nothing committed, nothing to land")
    else:
        crash_point("land")
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
                               "Uet-Integration-Tip": ledger.integration_tip()},
                     evidence=observer.ledger_evidence())
    except UetError as exc:  # the run's results are recorded; only the summary event is lost
        observer.message(f"could not record `run: finish`: {exc}")
    message = "; ".join(messages)
    ctx.pool.close(remove=not keep_worktrees)
    observer.finish({"run": ledger.run, "exit_code": exit_code, "counts": counts,
                     "landed": landed, "target": ledger.target,
                     "integration": ledger.integration_tip(), "message": message},
                    _rows(ledger, ctx.plan, include, engine.spent))
    return RunResult(ledger.run, exit_code, counts, landed, message)
