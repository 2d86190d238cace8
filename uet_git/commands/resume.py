"""``uet resume`` and the run half of ``uet retry``: continue a run from its refs.

What the ledger recorded is not redone; what it did not record is redone; nothing lands twice.
The table from recorded state to action is ``engine/seed.py``; ``only`` (a retry) works on
those workstreams alone, giving the quarantined or blocked ones a new attempt. Before anything
runs: the tools a killed run left running are stopped, and (in ``drive``) the worktrees it left
holding changes the ledger does not know are snapshotted into the ledger. The run's checks are
the ones it was started with (``config.json`` of its ledger, i.e. its base commit's
``uet.toml``), never the checkout's of today.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from uet_git.commands.journal import recover_landing
from uet_git.commands.respec import recorded_workstreams
from uet_git.commands.run import drive
from uet_git.engine.events import Observer
from uet_git.engine.inputs import load_inputs
from uet_git.engine.options import RunOptions, RunResult, resolve_jobs, resolve_land
from uet_git.engine.seed import recorded_config, retry_sets
from uet_git.errors import UetError
from uet_git.gitrepo.odb import missing_in_tree
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.takeover import open_ledger
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Config
from uet_git.workers.procfs import stop_stale

JOBS_ENV = ("UET_JOBS", "PIPELINE_MAX_WORKERS")


def resume_run(repo: Repo, run_id: str | None, options: RunOptions, observer: Observer, *,
               only: set[str] | None = None) -> RunResult:
    """Continue run ``run_id`` (default: the latest) from its refs. ``only``: work on those
    workstreams alone, giving the quarantined or blocked ones among them a new attempt."""
    run = query.resolve_run(repo, run_id)
    with open_ledger(repo, run) as ledger:
        # A landing or rollback of this run cut short by a kill is finished or undone before
        # anything else, whatever the resumed run then lands (--land never, nothing new).
        recovered = recover_landing(repo, ledger)
        if recovered:
            observer.message(recovered)
        record = ledger.plan or {}
        workstreams = recorded_workstreams(repo, ledger)  # plan.json + `uet retry` respecs
        if workstreams:
            config = recorded_config(repo, ledger)
        else:  # a run recorded by an older uet: read the files again
            config, workstreams, _ = load_inputs(repo, options)
        plan = build_plan(workstreams)
        selected = record.get("selected")
        include = set(selected) if isinstance(selected, list) and selected else set(plan.ids)
        include &= set(plan.ids)
        rerun: set[str] = set()
        if not only:
            reapplied, rerun = reapply_pruned(repo, ledger, include)
            for verb, which in (("re-applying", reapplied), ("running again", sorted(rerun))):
                if which:
                    observer.message(f"{verb} {', '.join(which)}: uet failed on "
                                     f"{'them' if len(which) > 1 else 'it'} because a concurrent "
                                     "`git gc --prune=now` removed an object uet needed")
        records = ledger.states()
        retry: set[str] = set(rerun)
        reverify: set[str] = set()
        if only:
            unknown = sorted(set(only) - set(plan.ids))
            if unknown:
                raise UetError(f"run {run} has no workstream {', '.join(unknown)}")
            include = set(only)
            retry, reverify = retry_sets(only, records)
        saved = record.get("options") if isinstance(record.get("options"), dict) else {}
        jobs = _jobs(options, saved, config)
        land_mode = resolve_land(options.land or saved.get("land"), config)
        deterministic = bool(options.deterministic or saved.get("deterministic"))
        stale = stop_stale(run)
        notes = [f"stopped {len(stale)} tool processes left running by the interrupted run: "
                 f"{', '.join(map(str, stale))}"] if stale else []
        what = f"retry of {', '.join(sorted(only))}" if only else "resume"
        ledger.event("run: resume", f"{what} by pid-{os.getpid()}",
                     trailers={"Uet-Resume": ",".join(sorted(only)) if only else "all"})
        return drive(repo, ledger, config=config, plan=plan, include=include, jobs=jobs,
                     land_mode=land_mode, deterministic=deterministic,
                     keep_worktrees=options.keep_worktrees, observer=observer,
                     weights=_weights(record, plan.ids), records=records, retry=retry,
                     resumed=True, reverify=reverify, warnings=notes)


# How an internal error caused by a concurrent prune reads (gitrepo.odb.MissingObject, the
# writer's checks, git refusing a ref to a removed object, libgit2's lookups, keepalive).
PRUNED_SIGNS = ("is missing from the repository", "is not an object in this repository",
                "nonexistent object", "object not found", "git gc --prune=now")


def reapply_pruned(repo: Repo, ledger: Ledger, include: set[str]
                   ) -> tuple[list[str], set[str]]:
    """Workstreams of ``include`` quarantined ``internal-error`` because an object uet needed
    was removed under it by a concurrent ``git gc --prune=now`` (their last transition says
    so): ``(reapplied, rerun)``. Those with an intact patch are recorded ``queued`` again (what
    ``uet retry --reapply`` records), so the resumed run integrates them; those cut before
    their patch existed get a new attempt (as ``uet retry`` gives). Not the tool's failure,
    nor the patch's: uet's own work was cut, and a resume is what redoes uet's work."""
    records = ledger.states()
    reapplied: list[str] = []
    rerun: set[str] = set()
    suspects = [ws for ws in sorted(include) if (rec := records.get(ws)) is not None
                and rec.state == "quarantined" and rec.reason == "internal-error"]
    if not suspects:  # the usual resume: no need to read the ledger's whole history
        return reapplied, rerun
    events = query.read_ledger(repo, ledger.run).events
    for ws in suspects:
        rec = records[ws]
        last = next((e for e in reversed(events) if e.ws == ws and e.is_transition), None)
        if last is None or not any(sign in last.summary for sign in PRUNED_SIGNS):
            continue
        if not rec.patch or missing_in_tree(repo, rec.patch):
            rerun.add(ws)
            continue
        ledger.record(ws, "queued", attempt=rec.attempt or 1, patch=rec.patch,
                      summary="re-applied by `uet resume`: a concurrent `git gc --prune=now` "
                              "had removed an object uet needed for it")
        reapplied.append(ws)
    return reapplied, rerun


def _jobs(options: RunOptions, saved: Mapping[str, Any], config: Config) -> int:
    """--jobs, then the environment, then what the run was started with, then uet.toml."""
    jobs = resolve_jobs(options.jobs, config)
    if options.jobs is None and isinstance(saved.get("jobs"), int) and not any(
            os.environ.get(v, "").strip() for v in JOBS_ENV):
        jobs = saved["jobs"]
    return jobs


def _weights(record: Mapping[str, Any], ids: Iterable[str]) -> dict[str, float]:
    nodes = record.get("nodes")
    out: dict[str, float] = {}
    if isinstance(nodes, list):
        for n in nodes:
            if isinstance(n, dict) and n.get("id") in ids and isinstance(n.get("weight"),
                                                                         int | float):
                out[n["id"]] = float(n["weight"])
    return out
