"""Continue a run from its refs (``uet resume``, ``uet retry``) and re-integrate a run onto a
moved target (``uet land --rebase``).

What the ledger recorded is not redone; what it did not record is redone; nothing lands twice:
- not started, or ``blocked`` by a dependency that is no longer failed -> the tool runs;
- ``created``/``validated`` -> validation and acceptance run again on the stored patch;
- ``queued`` -> integrated; ``applied``/``verified`` -> continued if the integration tip is still
  the candidate's parent, else back to ``queued`` and re-applied;
- ``committed``, ``quarantined``, ``dropped`` -> left alone (``only`` = a retry: its quarantined
  or blocked workstreams get a new attempt).
Worktrees the crashed run left holding changes the ledger does not know are snapshotted into
the ledger (a ``run: orphan`` event with the diff as evidence) before they are reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable

import pygit2

from uet_git.engine.options import RunOptions, RunResult, resolve_jobs, resolve_land
from uet_git.engine.pipeline import RunContext, preserve_worktree
from uet_git.engine.report import Reporter
from uet_git.engine.run import drive, load_inputs, workstreams_from_record
from uet_git.errors import UetError
from uet_git.gitrepo.objects import read_blob, to_oid
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import build_plan
from uet_git.spec.load import load_config
from uet_git.spec.models import Config


def stop_stale_tools(run: str, grace: float = 2.0) -> list[int]:
    """Processes a killed ``uet`` left running for this run (its tools, in their own sessions,
    outlive it): found by ``UET_RUN=RUN`` in their environment, terminated, then killed. They
    would otherwise keep writing into worktrees the resumed run is about to reuse."""
    marker = f"UET_RUN={run}".encode()
    me = os.getpid()
    spare = _ancestors(me)  # a shell a tool left open, from which this resume was typed

    def find() -> list[int]:
        pids = []
        for name in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not name.isdigit() or int(name) == me or int(name) in spare:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read()
                with open(f"/proc/{name}/stat", "rb") as f:
                    state = f.read().rsplit(b")", 1)[-1].split()[0]
            except OSError:
                continue
            if state != b"Z" and marker in env.split(b"\0"):
                pids.append(int(name))
        return pids

    found = find()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        pids = find()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        end = time.monotonic() + wait
        while time.monotonic() < end and find():
            time.sleep(0.05)
    return found


def _ancestors(pid: int) -> set[int]:
    out: set[int] = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[-1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return out


def _config_of(repo: Repo, ledger: Ledger) -> Config:
    raw = read_blob(repo, ledger.tip, "config.json")
    if raw:
        try:
            return Config.model_validate(json.loads(raw))
        except ValueError:
            pass
    return load_config(repo.workdir)


def record_orphans(ctx: RunContext) -> list[str]:
    """Snapshot this run's orphaned worktrees into the ledger, then hand them back to the pool.
    Returns the snapshot commits recorded."""
    recorded = []
    prefix = f"{ctx.run_id}/"
    states = ctx.ledger.states()
    for wt in ctx.pool.orphans():
        label = wt.label or ""
        if not label.startswith(prefix):
            if _finished(ctx.repo, label.split("/")[0]):
                # Kept by --keep-worktrees after a run that recorded every result: reusable.
                ctx.pool.release(wt)
            continue  # else another run's, interrupted: its own resume records it
        parts = label[len(prefix):].split("/")
        ws = parts[0] if parts else "?"
        snap = preserve_worktree(ctx, wt, label, states.get(ws), "the interrupted run")
        if snap is not None:
            recorded.append(snap)
        ctx.pool.release(wt)
    return recorded


def _finished(repo: Repo, run: str) -> bool:
    try:
        return query.read_ledger(repo, run).finished
    except Exception:  # not a run id, or no ledger: leave that worktree alone
        return False


def resume_run(repo: Repo, run_id: str | None, options: RunOptions, *,
               only: set[str] | None = None) -> RunResult:
    """Continue run ``run_id`` (default: the latest) from its refs. ``only``: work on those
    workstreams alone, giving the quarantined or blocked ones among them a new attempt."""
    run = query.resolve_run(repo, run_id)
    with Ledger.open(repo, run) as ledger:
        record = ledger.plan or {}
        workstreams = workstreams_from_record(record)
        if workstreams:
            config = _config_of(repo, ledger)
        else:  # a run recorded by an older uet: read the files again
            config, workstreams, _ = load_inputs(repo, options)
        plan = build_plan(workstreams)
        selected = record.get("selected")
        include = set(selected) if isinstance(selected, list) and selected else set(plan.ids)
        include &= set(plan.ids)
        records = ledger.states()
        retry: set[str] = set()
        reverify: set[str] = set()
        if only:
            unknown = sorted(set(only) - set(plan.ids))
            if unknown:
                raise UetError(f"run {run} has no workstream {', '.join(unknown)}")
            include = set(only)
            retry = {ws for ws in only
                     if ws in records and records[ws].state in ("quarantined", "blocked")}
            # Re-applied by `uet retry --reapply` (recorded quarantined -> queued just before).
            reverify = {ws for ws in only if ws in records and records[ws].state == "queued"}
        saved = record.get("options") if isinstance(record.get("options"), dict) else {}
        # --jobs, then the environment, then what the run was started with, then uet.toml.
        jobs = resolve_jobs(options.jobs, config)
        if options.jobs is None and isinstance(saved.get("jobs"), int) and not any(
                os.environ.get(v, "").strip() for v in ("UET_JOBS", "PIPELINE_MAX_WORKERS")):
            jobs = saved["jobs"]
        land_mode = resolve_land(options.land or saved.get("land"), config)
        deterministic = bool(options.deterministic or saved.get("deterministic"))
        reporter = Reporter(options.output)
        stale = stop_stale_tools(run)
        notes = [f"stopped {len(stale)} tool processes left running by the interrupted run: "
                 f"{', '.join(map(str, stale))}"] if stale else []
        what = f"retry of {', '.join(sorted(only))}" if only else "resume"
        ledger.event("run: resume", f"{what} by pid-{_pid()}",
                     trailers={"Uet-Resume": ",".join(sorted(only)) if only else "all"})
        return drive(repo, ledger, config=config, plan=plan, include=include, jobs=jobs,
                     land_mode=land_mode, deterministic=deterministic,
                     keep_worktrees=options.keep_worktrees, reporter=reporter,
                     weights=_weights(record, plan.ids), records=records, retry=retry,
                     resumed=True, reverify=reverify, warnings=notes)


def _pid() -> int:
    return os.getpid()


def _weights(record: dict, ids: Iterable[str]) -> dict[str, float]:
    nodes = record.get("nodes")
    out: dict[str, float] = {}
    if isinstance(nodes, list):
        for n in nodes:
            if isinstance(n, dict) and n.get("id") in ids and isinstance(n.get("weight"),
                                                                         int | float):
                out[n["id"]] = float(n["weight"])
    return out


# --------------------------------------------------------------------------- rebase


def committed_in_order(repo: Repo, ledger: Ledger) -> list[str]:
    """The run's committed workstreams in the order they were integrated."""
    states = ledger.states()
    order: list[str] = []
    for e in query.history(repo, ledger.run):
        if e.to == "committed" and e.ws and e.ws not in order:
            order.append(e.ws)
    return [ws for ws in order if ws in states and states[ws].state == "committed"]


def rebase_run(repo: Repo, ledger: Ledger, onto: str, options: RunOptions) -> RunResult:
    """Re-integrate every committed patch of the run onto ``onto`` (the target's new tip), in
    the order they were integrated (a topological order), re-verifying each candidate:
    acceptance again when its tree differs from the one verified before, pre-merge hooks always.
    All pass -> the integration ref moves to the new chain (a ``run: rebase`` event records the
    old and new tips) and the caller lands it. Any conflict or failure -> UetError (exit 1) and
    nothing moves: the run's integration ref keeps the work as it was."""
    from uet_git.engine.pipeline import run_commands
    from uet_git.engine.premerge import collect_hooks, hook_argv
    from uet_git.engine.run import make_pool
    from uet_git.workers.process import read_tail, run_process

    onto_oid = repo.rev_parse(onto)
    if onto_oid is None:
        raise UetError(f"rebase of run {ledger.run}: {onto!r} is not a commit")
    record = ledger.plan or {}
    workstreams = {ws.id: ws for ws in workstreams_from_record(record)}
    config = _config_of(repo, ledger)
    order = committed_in_order(repo, ledger)
    old_tip = ledger.integration_tip()
    states = ledger.states()
    reporter = Reporter(options.output)
    pool = make_pool(repo, config, 1)
    log_root = repo.uet_dir / "logs" / ledger.run / "rebase"
    tip = onto_oid
    done: list[str] = []
    try:
        for ws_id in order:
            rec = states[ws_id]
            cand = rec.candidate
            assert cand is not None
            commit = repo.pg[to_oid(cand)].peel(pygit2.Commit)
            new, conflicts = _rebase_one(repo, cand, tip)
            if new is None:
                raise UetError(f"re-integrating run {ledger.run} onto {onto_oid[:12]}: {ws_id} "
                               f"conflicts in {', '.join(conflicts[:10])}; nothing landed "
                               f"(resolve on the target, or `uet rollback`/`uet retry`)",
                               exit_code=1)
            ws = workstreams.get(ws_id)
            new_tree = repo.pg[to_oid(new)].peel(pygit2.Commit).tree_id
            rerun = bool(ws and ws.acceptance) and new_tree != commit.tree_id \
                and config.verify.rerun_on_candidate
            hooks = collect_hooks(repo, config, new)
            if rerun or hooks:
                wt = pool.acquire(new, f"{ledger.run}/{ws_id}/rebase")
                try:
                    env = {"UET_RUN": ledger.run, "UET_WORKSTREAM": ws_id,
                           "UET_WORKTREE": str(wt.path), "UET_CANDIDATE": new,
                           "UET_BASE": tip, "UET_TARGET": ledger.target or "",
                           **(ws.env if ws else {})}
                    logs = log_root / ws_id
                    logs.mkdir(parents=True, exist_ok=True)
                    timeout = ws.timeout if ws else 900.0
                    if rerun and ws is not None:
                        acc = run_commands(ws.acceptance, cwd=wt.path, env=env, timeout=timeout,
                                           log_dir=logs, name="acceptance", cancel=None)
                        if not acc.ok:
                            raise UetError(
                                f"re-integrating run {ledger.run} onto {onto_oid[:12]}: "
                                f"acceptance of {ws_id} fails on the new tip ({acc.failed}); "
                                "nothing landed", exit_code=1)
                    for i, hook in enumerate(hooks):
                        out, err = logs / f"hook-{i}.out", logs / f"hook-{i}.err"
                        res = run_process(hook_argv(hook, wt.path), cwd=wt.path, env=env,
                                          timeout=timeout, stdout_path=out, stderr_path=err)
                        if not res.ok:
                            tail = read_tail(err, 300).decode(errors="replace").strip()
                            raise UetError(
                                f"re-integrating run {ledger.run} onto {onto_oid[:12]}: "
                                f"pre-merge hook {hook.name} fails for {ws_id}"
                                f"{': ' + tail.splitlines()[-1] if tail else ''}; nothing landed",
                                exit_code=1)
                finally:
                    pool.release(wt)
            reporter.message(f"re-integrated {ws_id} onto the new tip as {new[:12]}")
            tip = new
            done.append(ws_id)
    finally:
        pool.close(remove=not options.keep_worktrees)
    if tip != old_tip:
        move_integration(ledger, tip, old=old_tip, onto=onto_oid, workstreams=done)
    counts = {"committed": len(done)}
    return RunResult(ledger.run, 0, counts, False,
                     f"re-integrated {len(done)} workstreams onto {onto_oid[:12]}")


def _rebase_one(repo: Repo, cand: str, tip: str) -> tuple[str | None, list[str]]:
    """The old candidate's change (against its first parent) applied onto ``tip``."""
    from uet_git.gitrepo.merge import merge_trees
    from uet_git.gitrepo.objects import make_commit

    commit = repo.pg[to_oid(cand)].peel(pygit2.Commit)
    parent = str(commit.parents[0].id) if commit.parents else None
    if parent == tip:
        return cand, []
    result = merge_trees(repo, parent, tip, cand)
    if result.conflicts or result.tree is None:
        return None, sorted(result.conflicts)
    return make_commit(repo, result.tree, [tip], commit.message, author=commit.author), []


def move_integration(ledger: Ledger, new: str, *, old: str, onto: str,
                     workstreams: list[str]) -> str:
    """Move the run's integration ref to a re-integrated chain that does not contain the old
    tip (the one move that is not a fast-forward): ``Ledger.rebase_integration`` writes the
    ``run: rebase`` ledger commit (``Uet-Onto``, ``Uet-Previous-Integration``,
    ``Uet-Integration``) and moves the ref in ONE transaction. Returns the ledger commit."""
    from uet_git.gitrepo.refs import RefConflict

    body = (f"re-integrated {len(workstreams)} committed workstreams onto {onto[:12]} "
            f"(the target moved): {', '.join(workstreams)}\n"
            f"integration: {old[:12]} -> {new[:12]}")
    try:
        return ledger.rebase_integration(onto, new, summary=body, old=old)
    except RefConflict as exc:
        raise UetError(f"run {ledger.run}: rebase not recorded: {exc}") from None
