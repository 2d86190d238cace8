"""`uet retry WS [RUN] [--reapply] [-j N]` (RUN also as --run RUN): a new attempt for a
quarantined (or blocked, once its dependencies committed) workstream, or with --reapply the
same patch re-integrated; then the run resumes on it and on the dependents it unblocks. The
exit code is the run's (0 all committed and landed, 1 anything quarantined or blocked, 130
interrupted)."""

from __future__ import annotations

import sys

import click

from uet_git.cli.complete import complete_run, complete_ws
from uet_git.cli.render import Reporter
from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.commands.actions import retry_ws
from uet_git.engine.options import RunOptions
from uet_git.gitrepo import Repo
from uet_git.ledger import query


@click.command()
@click.argument("ws", shell_complete=complete_ws)
@click.argument("run_arg", metavar="[RUN]", required=False, shell_complete=complete_run)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP, shell_complete=complete_run)
@click.option("--reapply", is_flag=True,
              help="Re-integrate the existing patch (re-verified on the current tip) instead of "
                   "running the tool again.")
@click.option("--frozen", is_flag=True,
              help="Keep the workstream's definition recorded when the run started, even if "
                   "its file changed since (by default the file is read again and the fields "
                   "that differ are printed).")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None, help="Parallel workers.")
def cmd(ws: str, run_arg: str | None, run_opt: str | None, reapply: bool, frozen: bool,
        jobs: int | None) -> None:
    """Retry workstream WS of RUN (default: the latest run). Only a quarantined workstream, or
    a blocked one whose dependencies are committed, can be retried."""
    repo = Repo.open(".")
    run_id = query.resolve_run(repo, pick_run(run_arg, run_opt))
    options = RunOptions(jobs=jobs)
    result = retry_ws(repo, run_id, ws, reapply=reapply, options=options,
                      observer=Reporter(options.output), frozen=frozen)
    # The run's summary (the reporter's last lines) already said result.message.
    sys.exit(result.exit_code)
