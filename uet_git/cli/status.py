"""`uet status [RUN] [--json]`: every workstream of a run (the latest by default) and counts.

The ``--json`` object (stable): ``run, base, target, started, updated, integration, finished,
landed, counts {state: n}, workstreams [{ws, state, attempt, reason, patch, candidate, started,
updated, duration, ref, collected}]``. Times are ISO 8601 UTC; ``duration`` is seconds between a
workstream's first and last ledger transition. ``state`` ``pending``: planned, not started.
Kept light on purpose: only the ledger reader is imported.
"""

from __future__ import annotations

from datetime import datetime

import click

from uet_git.cli._common import echo_json
from uet_git.cli.render import text_table
from uet_git.gitrepo import Repo
from uet_git.ledger import query


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_time(t: int | None) -> str:
    if t is None:
        return "-"

    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items()) or "no workstreams"


@click.command()
@click.argument("run", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON object.")
def cmd(run: str | None, as_json: bool) -> None:
    """Show the state of every workstream of RUN (default: the latest run; a unique prefix of
    a run id works): state, attempt, quarantine reason and time in the ledger, then the counts
    per state. States come from the refs refs/uet/<state>/RUN/WS, reasons and times from the
    ledger refs/uet/ledger/RUN. `pending`: planned, not started; `(gc)`: its refs were removed
    by `uet gc`, the state is the ledger's last transition.

    --json prints one object: run, base, target, started, updated, integration, finished,
    landed, counts {state: n}, workstreams [{ws, state, attempt, reason, patch, candidate,
    started, updated, duration, ref, collected}] (times ISO 8601 UTC, duration in seconds)."""
    repo = Repo.open(".")
    latest = query.latest_run(repo) if run is None else None
    if run is None and latest is None:
        if as_json:
            echo_json(None)
        else:
            click.echo("No runs yet in this repository: start one with `uet run`.")
        return
    run_id = latest or query.resolve_run(repo, run)
    st = query.run_status(repo, run_id)
    if as_json:
        echo_json(st.to_dict())
        return
    flags = [f for f, on in (("landed", st.landed), ("finished", st.finished)) if on]
    click.echo(f"run {st.run}  base {(st.base or '-')[:12]}  target {st.target or '-'}"
               + (f"  ({', '.join(flags)})" if flags else ""))
    rows = [
        [w.ws, w.state + (" (gc)" if w.collected else ""),
         "-" if w.attempt is None else str(w.attempt), w.reason or "", fmt_duration(w.duration)]
        for w in st.workstreams
    ]
    if rows:
        click.echo(text_table(rows, ["WORKSTREAM", "STATE", "ATTEMPT", "REASON", "DURATION"]))
    click.echo(f"{len(st.workstreams)} workstreams: {fmt_counts(st.counts)}")
