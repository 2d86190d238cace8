"""`uet rollback [RUN] [--yes] [--dry-run]`: undo what a run landed; its committed workstreams
become rolled-back.

Exit 0 when rolled back; 1 with one line when there is nothing to roll back (the run landed
nothing or is already rolled back) or when it was refused (a revert conflicts, a local change
of the user's is on a path the rollback changes, an operation is in progress in a checkout, the
target moved meanwhile) or declined at the prompt. Nothing is deleted from the ledger. Like a
landing, a rollback is journaled: one cut short (kill -9) is finished or undone by the next
`uet rollback` or `uet land`. On a terminal it first says what it will reset and asks, unless
--yes; with stdin not a terminal (CI, scripts) it proceeds, as before.
"""

from __future__ import annotations

import sys

import click

from uet_git.cli.complete import complete_run
from uet_git.commands.rollback import rollback_run
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--yes", "-y", is_flag=True, help="Do not ask on a terminal.")
@click.option("--dry-run", is_flag=True, help="Print what would move; write nothing.")
def cmd(run: str | None, yes: bool, dry_run: bool) -> None:
    """Undo what RUN (default: the latest run) landed on its target branch. If the target still
    points at what the run landed, it moves back to where the run found it (compare-and-swap);
    otherwise revert commits for the run's patches are added on top, newest first. Every
    committed workstream of the run becomes rolled-back (refs/uet/rolled-back/RUN/WS)."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, run)
    if dry_run or (not yes and _interactive()):
        plan = rollback_run(repo, run_id, dry_run=True)
        if not plan.rolled_back:
            raise UetError(plan.message, exit_code=EXIT_WORK_FAILED)
        for line in plan.would:
            click.echo(line)
        if dry_run:
            click.echo(plan.message)
            return
        if not click.confirm(f"roll back run {run_id}?", default=False):
            raise UetError(f"nothing rolled back (declined); `uet rollback {run_id} --yes` "
                           "skips the question", exit_code=EXIT_WORK_FAILED)
    result = rollback_run(repo, run_id)
    if not result.rolled_back:
        raise UetError(result.message, exit_code=EXIT_WORK_FAILED)
    click.echo(result.message)
    for oid in result.reverts:
        click.echo(f"  {oid}")
