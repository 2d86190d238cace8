"""`uet drop WS [RUN]` (or --run RUN): a quarantined or blocked workstream becomes dropped, with the
dependents that can then never run. Exit 0; an illegal state is a one-line error (exit 2)."""

from __future__ import annotations

import click

from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.commands.actions import drop_ws
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("ws")
@click.argument("run_arg", metavar="[RUN]", required=False)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP)
def cmd(ws: str, run_arg: str | None, run_opt: str | None) -> None:
    """Drop workstream WS of RUN (default: the latest run). Only a quarantined or blocked
    workstream can be dropped; its blocked dependents are dropped too. The ledger keeps
    everything (refs/uet/dropped/RUN/WS)."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, pick_run(run_arg, run_opt))
    click.echo(drop_ws(repo, run_id, ws))
