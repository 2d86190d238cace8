"""`uet report [RUN] [-o FILE]`: one self-contained HTML file about a run (no network: inline
CSS, SVG and a few lines of JS), made from the ledger alone, so any clone that fetched
``refs/uet/*`` can make it after the run.

What it shows: the run's counts, wall time, the plan's bound and the bound from the measured
durations with the parallel efficiency (measured bound / wall time); a Gantt chart of the
workers (one bar per tool run, acceptance run on a patch and verification of a candidate,
from ``run/timings.json``, see ``engine/live.py``, and for attempts run on Dask workers from
their transitions' ``Uet-Remote-Steps``, see ``engine/remotesteps.py``; a run without it,
killed before its last event, gets one bar per workstream from the ledger's times); the DAG
coloured by state with the critical path; and per workstream its reason, history, evidence
blobs and diff, each one click away (``<details>``). The data gathering is here; the HTML is
``cli/htmlreport.py``.
"""
from __future__ import annotations

from pathlib import Path

import click

from uet_git.cli.complete import complete_run
from uet_git.cli.htmlreport import render_html
from uet_git.cli.reportdata import gather
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("report.html"), show_default=True, help="The HTML file to write.")
def cmd(run: str | None, output: Path) -> None:
    """Write one self-contained HTML report of RUN (default: the latest run): a Gantt chart
    of the workers (tool, acceptance, verification), the DAG coloured by state with the
    critical path, parallel efficiency (actual wall time against the bound), and each
    workstream's reason, history, evidence and diff one click away. No network needed to
    view it."""
    repo = Repo.open(".", bare_ok=True)
    run_id = query.resolve_run(repo, run)
    page = render_html(gather(repo, run_id))
    try:
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UetError(f"{output}: cannot write the report: {exc.strerror}") from None
    click.echo(f"wrote {output} (run {run_id}, {len(page) // 1024} KiB)")
