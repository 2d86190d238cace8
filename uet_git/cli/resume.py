"""`uet resume [RUN] [--jobs N] [--json]`: continue an interrupted run (crash, kill -9, Ctrl-C)
from its refs. Exit codes as `uet run`."""

from __future__ import annotations

import sys

import click

from uet_git.cli.complete import complete_run
from uet_git.cli.render import Reporter
from uet_git.commands.resume import resume_run
from uet_git.engine.live import LiveRun
from uet_git.engine.options import RunOptions
from uet_git.gitrepo import Repo


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Parallel workers.")
@click.option("--land", "land", type=click.Choice(["end", "continuous", "never"]), default=None,
              help="When to land (default: as the run was started).")
@click.option("--keep-worktrees", is_flag=True, help="Keep the worktrees and logs afterwards.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, as `uet run --json`.")
@click.option("--quiet", "-q", is_flag=True, help="Only the final summary.")
def cmd(run: str | None, jobs: int | None, land: str | None, keep_worktrees: bool,
        as_json: bool, quiet: bool) -> None:
    """Continue RUN (default: the latest run): what the ledger recorded is not redone, what it
    did not record is redone, nothing lands twice."""
    repo = Repo.open(".")
    options = RunOptions(jobs=jobs, land=land, keep_worktrees=keep_worktrees,
                         output="json" if as_json else "auto")
    reporter = Reporter(options.output, quiet=quiet)
    live = LiveRun(repo, reporter)
    reporter.facts = live.facts
    try:
        result = resume_run(repo, run, options, live)
    finally:
        live.close()
    sys.exit(result.exit_code)
