"""`uet gc [--older-than 30d] [--dry-run] [--include-quarantined] [--prune-dropped]`."""

from __future__ import annotations

from typing import Any

import click

from uet_git.cli._common import echo_json
from uet_git.gitrepo import Repo
from uet_git.ledger.gc import GcResult, gc, parse_age
from uet_git.ledger.words import plural
from uet_git.spec.load import load_config
from uet_git.workers.pool import IdlePrune, pool_root, prune_idle


@click.command()
@click.option("--older-than", "older_than", default="30d", show_default=True, metavar="AGE",
              help="Only runs whose last ledger commit is older than AGE (s, m, h, d, w).")
@click.option("--dry-run", is_flag=True, help="List what would be removed.")
@click.option("--include-quarantined", is_flag=True,
              help="Also remove quarantined and blocked workstreams' refs and patches.")
@click.option("--prune-dropped", is_flag=True,
              help="Also remove the refs of dropped and rolled-back workstreams, listing each: "
                   "their patches then become garbage for git's own gc.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json.md) instead of the lines.")
def cmd(older_than: str, dry_run: bool, include_quarantined: bool, prune_dropped: bool,
        as_json: bool) -> None:
    """Remove the refs of finished workstreams of old runs, then pack refs.

    For each run idle longer than AGE whose writer lock is free: the state ref and the patch
    refs of every committed workstream are deleted (its change lives on in the integration
    chain). Dropped and rolled-back workstreams keep theirs, so their patches stay reachable,
    unless --prune-dropped (each one that goes is listed); quarantined and blocked ones keep
    theirs unless --include-quarantined; interrupted ones, created..verified, are kept so the
    run can be resumed. The integration ref goes when no state ref is left and its work is on
    the target branch (or there is none). The ledger branch refs/uet/ledger/RUN is always
    kept: it is the audit trail, `uet status`/`log`/`show` keep working on it, and `uet check`
    uses it to recognise landed patches (remove a whole run by hand with
    `git update-ref -d refs/uet/ledger/RUN`). A `run: gc` ledger commit records what was
    removed. Live runs are never touched, and refs are not packed while one runs. Stale
    live-state files (.git/uet/live/RUN.json of a process that was killed) are removed
    whatever their age."""
    age = parse_age(older_than)
    repo = Repo.open(".", bare_ok=True)
    res = gc(repo, age, include_quarantined=include_quarantined, dry_run=dry_run,
             prune_dropped=prune_dropped)
    # Kept worktrees (the pool reuses them between runs) idle for longer than AGE go too.
    wcfg = None if repo.bare else load_config(repo.workdir).worktree
    root = pool_root(repo, wcfg.root if wcfg else None)
    idle = prune_idle(repo, root, older_than=age.total_seconds(), dry_run=dry_run,
                      teardown=list(wcfg.teardown) if wcfg else [])
    if as_json:
        echo_json(to_dict(res, older_than, idle))
        return
    verb = "would remove" if dry_run else "removed"
    for r in res.runs:
        click.echo(f"{r.run}: {verb} {plural(len(r.refs), 'ref')}"
                   + (f" of {plural(len(r.workstreams), 'workstream')}"
                      if r.workstreams else ""))
        for line in r.pruned:
            click.echo(f"  {'would prune' if dry_run else 'pruned'} {line}")
        if dry_run:
            for name in sorted(r.refs):
                click.echo(f"  {name}")
        if r.note:
            click.echo(f"  {r.note}")
    for line in res.skipped:
        click.echo(line)
    for what in res.live_removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} the stale live-state file of "
                   f"run {what}: its process is gone")
    for name in res.inbox_removed:
        click.echo(f"{verb} {name}: its attempt is recorded (inbox refs are transport only)")
    for path in idle.removed:
        click.echo(f"{verb} the idle worktree {path}")
    for line in idle.kept + idle.teardown_failed:
        click.echo(line)
    if not res.runs and not res.inbox_removed and not idle.removed:
        click.echo(f"nothing to remove in runs idle for more than {older_than}")
    if res.packed:
        click.echo("packed refs (git pack-refs --all)")
    elif res.pack_note:
        click.echo(res.pack_note)


def to_dict(res: GcResult, older_than: str, idle: IdlePrune) -> dict[str, Any]:
    return {
        "dry_run": res.dry_run,
        "older_than": older_than,
        "runs": [{"run": r.run, "refs": sorted(r.refs), "workstreams": list(r.workstreams),
                  "pruned": list(r.pruned), "note": r.note} for r in res.runs],
        "skipped": list(res.skipped),
        "live_files": list(res.live_removed),
        "inbox_refs": list(res.inbox_removed),
        "worktrees": [str(p) for p in idle.removed],
        "worktrees_kept": list(idle.kept),
        "teardown_failed": list(idle.teardown_failed),
        "packed": res.packed,
        "pack_note": res.pack_note,
    }
