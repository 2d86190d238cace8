"""`uet show WS [RUN] [--attempt N] [--evidence NAME]`: a workstream's record, the diff stat of
its change, its history and its evidence with the git command that reads each blob; with
--evidence, that blob's raw bytes on stdout. RUN may also be given as --run RUN."""

from __future__ import annotations

import sys

import click

from uet_git.cli.diff import change_of
from uet_git.cli.log import format_events
from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.cli.status import fmt_duration, fmt_time
from uet_git.errors import UetError
from uet_git.gitrepo import Repo, odb
from uet_git.gitrepo.merge import diff_stat
from uet_git.ledger import query
from uet_git.workers.tools import result_summary


@click.command()
@click.argument("ws")
@click.argument("run_arg", metavar="[RUN]", required=False)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP)
@click.option("--attempt", type=click.IntRange(1), help="The attempt (default: the latest).")
@click.option("--evidence", "name", metavar="NAME",
              help="Print this evidence blob raw (e.g. tool.stdout) and nothing else.")
def cmd(ws: str, run_arg: str | None, run_opt: str | None, attempt: int | None,
        name: str | None) -> None:
    """Show workstream WS of RUN (default: the latest run): its state, attempt, reason, patch
    and candidate commits and timings, the diff stat of its change (`uet diff WS RUN` shows
    the diff), its ledger history, and its evidence blobs (stored in the ledger tree under
    evidence/WS/ATTEMPT/NAME), each with the git command that reads it."""
    repo = Repo.open(".", bare_ok=True)
    run = pick_run(run_arg, run_opt)
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
    change = change_of(rec)
    if change is not None and odb.has_object(repo, change[1]):
        what, commit = change
        parent = odb.get_commit(repo, commit).parent
        click.echo(f"\nchange ({what} {commit[:12]} against its parent; "
                   f"`uet diff {ws} {run_id}` shows it):")
        for line in diff_stat(repo, parent, commit).rstrip("\n").splitlines():
            click.echo(f"  {line.strip()}")
    click.echo("\nhistory:")
    for line in format_events(query.history(repo, run_id, ws), fmt_time):
        click.echo(f"  {line}")
    shown = attempt if attempt is not None else rec.attempt
    names = query.evidence(repo, run_id, ws, shown)
    click.echo(f"\nevidence (attempt {shown if shown is not None else '-'}):")
    if not names:
        click.echo("  (none)")
    width = max((len(n) for n in names), default=0)
    for n in names:
        click.echo(f"  {n:<{width}}  git show refs/uet/ledger/{run_id}:evidence/{ws}/{shown}/{n}")
    if "result.json" in names:  # the agent's own JSON result (claude: cost, turns, session)
        data = query.evidence(repo, run_id, ws, shown, "result.json")
        agent = result_summary(data) if isinstance(data, bytes) else None
        click.echo(f"agent: {agent}" if agent else "agent: (no cost or turns in result.json)")
    if names:
        click.echo(f"or: uet show {ws} {run_id} --evidence NAME"
                   + (f" --attempt {shown}" if attempt is not None else ""))
