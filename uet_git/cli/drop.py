"""`uet drop WS [RUN] [--dry-run]` (RUN also as --run RUN): a quarantined or blocked workstream
becomes dropped, with the dependents that can then never run; a committed one that has not
landed is taken out of the integration chain (the rest re-integrated and re-verified without
it). Exit 0; an illegal state is a one-line error."""

from __future__ import annotations

import click

from uet_git.cli.complete import complete_run, complete_ws
from uet_git.cli.render import Reporter
from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.commands.actions import drop
from uet_git.engine.options import RunOptions
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("ws", shell_complete=complete_ws)
@click.argument("run_arg", metavar="[RUN]", required=False, shell_complete=complete_run)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP, shell_complete=complete_run)
@click.option("--dry-run", is_flag=True, help="Print what would move; write nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="Workers for re-verification when a committed workstream is dropped.")
def cmd(ws: str, run_arg: str | None, run_opt: str | None, dry_run: bool,
        jobs: int | None) -> None:
    """Drop workstream WS of RUN (default: the latest run). A quarantined or blocked
    workstream is dropped with its blocked dependents; a committed one that has not landed is
    taken out of the integration chain (refused, with the list, while committed workstreams
    depend on it). The ledger keeps everything (refs/uet/dropped/RUN/WS)."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, pick_run(run_arg, run_opt))
    options = RunOptions(jobs=jobs)
    message, would = drop(repo, run_id, ws, dry_run=dry_run, options=options,
                          observer=Reporter(options.output))
    for line in would:
        click.echo(line)
    click.echo(message)
