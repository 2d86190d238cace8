"""`uet gc [--older-than 30d] [--dry-run] [--include-quarantined] [--prune-dropped]`."""

from __future__ import annotations

import click

from uet_git.gitrepo import Repo
from uet_git.ledger.gc import gc, parse_age


@click.command()
@click.option("--older-than", "older_than", default="30d", show_default=True, metavar="AGE",
              help="Only runs whose last ledger commit is older than AGE (s, m, h, d, w).")
@click.option("--dry-run", is_flag=True, help="List what would be removed.")
@click.option("--include-quarantined", is_flag=True,
              help="Also remove quarantined and blocked workstreams' refs and patches.")
@click.option("--prune-dropped", is_flag=True,
              help="Also remove the refs of dropped and rolled-back workstreams, listing each: "
                   "their patches then become garbage for git's own gc.")
def cmd(older_than: str, dry_run: bool, include_quarantined: bool, prune_dropped: bool) -> None:
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
    removed. Live runs are never touched, and refs are not packed while one runs."""
    age = parse_age(older_than)
    res = gc(Repo.open("."), age, include_quarantined=include_quarantined, dry_run=dry_run,
             prune_dropped=prune_dropped)
    verb = "would remove" if dry_run else "removed"
    for r in res.runs:
        click.echo(f"{r.run}: {verb} {len(r.refs)} refs"
                   + (f" of {len(r.workstreams)} workstreams" if r.workstreams else ""))
        for line in r.pruned:
            click.echo(f"  {'would prune' if dry_run else 'pruned'} {line}")
        if dry_run:
            for name in sorted(r.refs):
                click.echo(f"  {name}")
        if r.note:
            click.echo(f"  {r.note}")
    for line in res.skipped:
        click.echo(line)
    if not res.runs:
        click.echo(f"nothing to remove in runs idle for more than {older_than}")
    if res.packed:
        click.echo("packed refs (git pack-refs --all)")
    elif res.pack_note:
        click.echo(res.pack_note)
