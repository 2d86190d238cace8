"""`uet fsck [RUN] [--repair]`: check that refs/uet/ and the ledger agree; one line per
violation. With --repair, refs that disagree with the ledger are reset from it first."""

from __future__ import annotations

import click

from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.lock import LedgerBusy
from uet_git.ledger.repair import repair


@click.command()
@click.argument("run", required=False)
@click.option("--repair", "do_repair", is_flag=True,
              help="Reset every ref of RUN (default: of every run not running now) that "
                   "disagrees with the ledger, e.g. an integration ref a tool moved, recording "
                   "a `run: repair` ledger commit; then check.")
def cmd(run: str | None, do_repair: bool) -> None:
    """Check RUN (default: every run and every ref under refs/uet/): one state ref per started
    workstream, agreeing with its last ledger transition; legal transitions; every object the
    refs and ledger name exists; patch refs match the ledger; the integration ref holds exactly
    the committed patches, in dependency order. Prints one line per violation; exit 0 when
    clean, 1 otherwise.

    --repair first resets the refs from the ledger (the ledger is the truth, refs are its
    index), one line per fix; what it cannot fix is then reported as above."""
    repo = Repo.open(".", bare_ok=True)
    if do_repair:
        run = _repair(repo, run)
    problems = fsck(repo, run)
    for line in problems:
        click.echo(line)
    if problems:
        raise UetError(f"fsck: {len(problems)} problem{'s' * (len(problems) != 1)}",
                       exit_code=EXIT_WORK_FAILED)
    click.echo("uet fsck: clean")


def _repair(repo: Repo, run: str | None) -> str | None:
    """Repair ``run`` (a unique prefix works) or every run; returns the run id checked next."""
    if run is not None:
        runs = [query.resolve_run(repo, run)]
    else:
        runs = [r.run for r in query.list_runs(repo)]
    fixed = 0
    for run_id in runs:
        try:
            lines = repair(repo, run_id)
        except LedgerBusy as exc:
            if run is not None:
                raise
            click.echo(f"{run_id}: not repaired: {exc}")
            continue
        for line in lines:
            click.echo(f"{run_id}: {line}")
        fixed += len(lines)
    click.echo(f"uet fsck --repair: {fixed} fix{'es' * (fixed != 1)}")
    return runs[0] if run is not None else None
