"""`uet show WS [--run RUN] [--attempt N] [--evidence NAME]`: a workstream's record, its history
and its evidence; with --evidence, that blob's raw bytes on stdout."""

from __future__ import annotations

import sys

import click

from uet_git.cli.log import format_events
from uet_git.cli.status import fmt_duration, fmt_time
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("ws")
@click.option("--run", "run", metavar="RUN", help="The run (default: the latest).")
@click.option("--attempt", type=click.IntRange(1), help="The attempt (default: the latest).")
@click.option("--evidence", "name", metavar="NAME",
              help="Print this evidence blob raw (e.g. tool.stdout) and nothing else.")
def cmd(ws: str, run: str | None, attempt: int | None, name: str | None) -> None:
    """Show workstream WS of a run: its state, attempt, reason, patch and candidate commits and
    timings, its ledger history, and the names of its evidence blobs (stored in the ledger tree
    under evidence/WS/ATTEMPT/NAME)."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, run)
    if name is not None:
        data = query.evidence(repo, run_id, ws, attempt, name)
        assert isinstance(data, bytes)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        rec = query.ws_status(repo, run_id, ws)
    except UetError as err:
        if run is None:  # the latest run: say which runs do have it
            others = sorted({name.split("/")[3] for name, _ in
                             query.for_each_ref(repo, [f"refs/uet/*/*/{ws}"])} - {run_id})
            if others:
                raise UetError(f"{err}; it is in run {others[-1]}: use --run {others[-1]}") \
                    from None
        raise
    fields = [
        ("workstream", rec.ws),
        ("run", run_id),
        ("state", rec.state + (" (refs removed by uet gc)" if rec.collected else "")),
        ("attempt", "-" if rec.attempt is None else str(rec.attempt)),
        ("reason", rec.reason or "-"),
        ("patch", rec.patch or "-"),
        ("candidate", rec.candidate or "-"),
        ("ref", rec.ref or "-"),
        ("started", fmt_time(rec.started)),
        ("updated", fmt_time(rec.updated)),
        ("duration", fmt_duration(rec.duration)),
    ]
    for k, v in fields:
        click.echo(f"{k + ':':<11} {v}")
    if rec.state == query.PENDING:
        return
    click.echo("\nhistory:")
    for line in format_events(query.history(repo, run_id, ws), fmt_time):
        click.echo(f"  {line}")
    shown = attempt if attempt is not None else rec.attempt
    names = query.evidence(repo, run_id, ws, shown)
    click.echo(f"\nevidence (attempt {shown if shown is not None else '-'}):")
    if not names:
        click.echo("  (none)")
    for n in names:
        click.echo(f"  {n}")
    if names:
        click.echo(f"read one with: uet show {ws} --run {run_id} --evidence NAME"
                   + (f" --attempt {shown}" if attempt is not None else ""))
