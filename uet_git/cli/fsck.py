"""`uet fsck [RUN]`: check that refs/uet/ and the ledger agree; one line per violation."""

from __future__ import annotations

import click

from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger.fsck import fsck


@click.command()
@click.argument("run", required=False)
def cmd(run: str | None) -> None:
    """Check RUN (default: every run and every ref under refs/uet/): one state ref per started
    workstream, agreeing with its last ledger transition; legal transitions; every object the
    refs and ledger name exists; patch refs match the ledger; the integration ref holds exactly
    the committed patches, in dependency order. Prints one line per violation; exit 0 when
    clean, 1 otherwise."""
    problems = fsck(Repo.open("."), run)
    for line in problems:
        click.echo(line)
    if problems:
        raise UetError(f"fsck: {len(problems)} problem{'s' * (len(problems) != 1)}",
                       exit_code=EXIT_WORK_FAILED)
    click.echo("uet fsck: clean")
