"""`uet land [RUN] [--rebase] [--only WS,... | --exclude WS,...] [--dry-run]`: fast-forward the
run's target branch to the integration tip its ledger recorded, or to a re-verified chain of a
subset of its committed workstreams.

Exit 0 when the target holds what was asked afterwards (landed now or earlier), 1 when nothing
landed (the target moved, a local change or file of the user's is in the way, an operation is
in progress in a checkout, the integration ref disagrees with the ledger, the run was rolled
back, the subset is not closed under dependencies), with one line saying what to do. Takes the
run's writer lock: a live run is refused. A landing or rollback of the run that was cut short
(kill -9) is finished or undone first. --dry-run prints what would move and writes nothing.
"""

from __future__ import annotations

import click

from uet_git.cli.complete import complete_run, complete_ws_list
from uet_git.cli.render import Reporter
from uet_git.commands.land import land
from uet_git.engine.options import RunOptions
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger


def ws_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [w.strip() for w in value.split(",") if w.strip()]


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--rebase", is_flag=True,
              help="If the target moved, re-integrate the run's committed patches onto its new "
                   "tip (re-verifying each) and land the result.")
@click.option("--only", "only", metavar="WS,...", shell_complete=complete_ws_list,
              help="Land only these committed workstreams (closed under dependencies), "
                   "re-made onto the target and re-verified; the rest stay committed.")
@click.option("--exclude", "exclude", metavar="WS,...", shell_complete=complete_ws_list,
              help="Land every committed workstream but these (and nothing that needs them).")
@click.option("--dry-run", is_flag=True, help="Print what would move; write nothing.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="Workers for re-verification with --rebase, --only or --exclude.")
def cmd(run: str | None, rebase: bool, only: str | None, exclude: str | None, dry_run: bool,
        jobs: int | None) -> None:
    """Fast-forward the target branch of RUN (default: the latest run) to the integration tip
    the run's ledger recorded (refs/uet/integration/RUN must agree with it), with a
    compare-and-swap. A checkout of the target is updated like `git merge --ff-only`: local
    changes to other paths are kept; a change to a landed path, an ignored or untracked file in
    the way, or a rebase/merge/cherry-pick/revert/bisect in progress refuses. Nothing is ever
    forced: if the target moved, use --rebase. With --only/--exclude a dependency-closed subset
    lands; `uet land RUN --rebase` lands the rest later."""
    if only is not None and exclude is not None:
        raise UetError("give --only or --exclude, not both")
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, run)
    options = RunOptions(jobs=jobs)
    with Ledger.open(repo, run_id) as ledger:
        result = land(repo, ledger, rebase=rebase, options=options,
                      observer=Reporter(options.output), only=ws_list(only),
                      exclude=ws_list(exclude), dry_run=dry_run)
    for line in result.would:
        click.echo(line)
    if not result.landed:
        raise UetError(result.message, exit_code=EXIT_WORK_FAILED)
    click.echo(result.message)
