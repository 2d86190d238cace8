"""`uet log [RUN] [--ws WS] [--json]`: the ledger history of a run or one workstream."""

from __future__ import annotations

import re

import click

from uet_git.cli._common import echo_json
from uet_git.cli.complete import complete_run, complete_ws
from uet_git.cli.render import NO_RUNS, fmt_time
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--ws", "ws", metavar="WS", help="Only this workstream's transitions.",
              shell_complete=complete_ws)
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list of events: oid, time, ws, from, to, attempt, reason, subject, "
                   "summary, trailers.")
def cmd(run: str | None, ws: str | None, as_json: bool) -> None:
    """Show the ledger history of RUN (default: the latest run), oldest first: one line per
    ledger commit (the same as `git log --reverse refs/uet/ledger/RUN`). With no run in the
    repository and no RUN given it says so and exits 0 (`uet status` does the same); an
    unknown RUN is a one-line error, exit 2."""
    repo = Repo.open(".", bare_ok=True)
    if run is None and query.latest_run(repo) is None:
        if as_json:
            echo_json([])
        else:
            click.echo(NO_RUNS)
        return
    run_id = query.resolve_run(repo, run)
    events = query.history(repo, run_id, ws)
    if as_json:
        echo_json([e.to_dict() for e in events])
        return
    for line in format_events(events, fmt_time):
        click.echo(line)


def format_events(events: list, fmt_time) -> list[str]:  # type: ignore[type-arg]
    lines = []
    for e in events:
        parts = [fmt_time(e.time), e.oid[:10]]
        if e.is_transition:
            parts.append(f"{e.ws}: {e.from_ or 'none'} -> {e.to}")
            if e.attempt is not None:
                parts.append(f"attempt {e.attempt}")
            if e.reason:
                parts.append(f"[{e.reason}]")
        else:
            parts.append(e.subject)
        line = "  ".join(parts)
        # The writer's default summary only repeats the subject; show what a human wrote.
        default = e.is_transition and re.match(
            rf"{re.escape(e.ws or '')} (entered the ledger|moved from) ", e.summary)
        if e.summary and not default:
            line += f"  — {e.summary.splitlines()[0]}"
        lines.append(line)
    return lines
