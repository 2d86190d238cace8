"""`uet fetch [REMOTE] [RUN...]`: bring runs' refs from a remote, keeping the ledger consistent."""

from __future__ import annotations

import click

from uet_git.commands.sync import fetch
from uet_git.gitrepo import Repo


@click.command()
@click.argument("remote", required=False, default="origin")
@click.argument("runs", nargs=-1)
def cmd(remote: str, runs: tuple[str, ...]) -> None:
    """Fetch RUNs (default: every run REMOTE has) from REMOTE (default: origin): the state
    refs of each run made equal to the remote's (a workstream keeps one state ref), ledger refs
    only fast-forwarded (a diverged ledger is refused, naming the run; a run further ahead
    here is left alone), patch refs never moved, the integration ref fast-forwarded or moved by
    a recorded rebase; all in one local ref transaction."""
    repo = Repo.open(".", bare_ok=True)
    for line in fetch(repo, remote, runs).lines("fetched"):
        click.echo(line)
