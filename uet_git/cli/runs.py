"""`uet runs [--json]`: the runs recorded under refs/uet/ledger/, oldest first; ``live``: a
process runs it now (its live-state file, ``ledger/live.py``)."""

from __future__ import annotations

import click

from uet_git.cli._common import echo_json
from uet_git.cli.render import NO_RUNS, fmt_counts, fmt_time, text_table
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.live import read_live


def landed_cell(r: query.RunInfo) -> str:
    """``yes``, ``2 of 5`` (a partial landing: 2 of the 5 committed workstreams), or ``no``."""
    if r.landed:
        return "yes"
    n = len(r.landed_workstreams)
    return f"{n} of {r.counts.get('committed', 0)}" if n else "no"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def cmd(as_json: bool) -> None:
    """List the runs recorded in the ledger (oldest first): id, base commit, target branch,
    start time, workstream counts per state, and whether the run finished (`live`: a process
    runs it now) and landed."""
    repo = Repo.open(".", bare_ok=True)
    runs = query.list_runs(repo)
    live = {r.run for r in runs if (lv := read_live(repo, r.run)) is not None and lv.live}
    if as_json:
        echo_json([{**r.to_dict(), "live": r.run in live} for r in runs])
        return
    if not runs:
        click.echo(NO_RUNS)
        return
    rows = [
        [r.run, (r.base or "-")[:12], r.target or "-", fmt_time(r.started), fmt_counts(r.counts),
         "live" if r.run in live else "yes" if r.finished else "no",
         landed_cell(r)]
        for r in runs
    ]
    headers = ["RUN", "BASE", "TARGET", "STARTED", "COUNTS", "FINISHED", "LANDED"]
    click.echo(text_table(rows, headers))
