"""`uet land [RUN] [--rebase]`: fast-forward the run's target branch to the integration tip its
ledger recorded.

Exit 0 when the target holds the run's integration tip afterwards (landed now or earlier), 1 when
nothing landed (the target moved, a local change or file of the user's is in the way, an
operation is in progress in a checkout, the integration ref disagrees with the ledger, the run
was rolled back), with one line saying what to do. Takes the run's writer lock: a live run is
refused. A landing or rollback of the run that was cut short (kill -9) is finished or undone
first.
"""

from __future__ import annotations

import click

from uet_git.cli.render import Reporter
from uet_git.commands.land import land
from uet_git.engine.options import RunOptions
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger


@click.command()
@click.argument("run", required=False)
@click.option("--rebase", is_flag=True,
              help="If the target moved, re-integrate the run's committed patches onto its new "
                   "tip (re-verifying each) and land the result.")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="Workers for re-verification with --rebase.")
def cmd(run: str | None, rebase: bool, jobs: int | None) -> None:
    """Fast-forward the target branch of RUN (default: the latest run) to the integration tip
    the run's ledger recorded (refs/uet/integration/RUN must agree with it), with a
    compare-and-swap. A checkout of the target is updated like `git merge --ff-only`: local
    changes to other paths are kept; a change to a landed path, an ignored or untracked file in
    the way, or a rebase/merge/cherry-pick/revert/bisect in progress refuses. Nothing is ever
    forced: if the target moved, use --rebase."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, run)
    options = RunOptions(jobs=jobs)
    with Ledger.open(repo, run_id) as ledger:
        result = land(repo, ledger, rebase=rebase, options=options,
                      observer=Reporter(options.output))
    if not result.landed:
        raise UetError(result.message, exit_code=EXIT_WORK_FAILED)
    click.echo(result.message)
