"""`uet push [REMOTE] [RUN...]`: send runs' refs to a remote, keeping its ledger consistent."""

from __future__ import annotations

import click

from uet_git.commands.sync import push
from uet_git.gitrepo import Repo


@click.command()
@click.argument("remote", required=False, default="origin")
@click.argument("runs", nargs=-1)
def cmd(remote: str, runs: tuple[str, ...]) -> None:
    """Push RUNs (default: every run here) to REMOTE (default: origin) in one atomic push:
    state refs replaced and pruned so the remote holds exactly this repository's, ledger refs
    only fast-forwarded (a diverged ledger is refused, naming the run), patch refs never moved,
    the integration ref fast-forwarded or moved by a recorded rebase. Each ref is updated only
    if the remote still holds what was read (--force-with-lease per ref); nothing is pushed
    when any is refused."""
    repo = Repo.open(".", bare_ok=True)
    for line in push(repo, remote, runs).lines("pushed"):
        click.echo(line)
