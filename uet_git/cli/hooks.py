"""`uet hooks install|uninstall`: git hooks that refuse unverified uet patches."""

from __future__ import annotations

import click

from uet_git.gitrepo import Repo
from uet_git.hooks.githooks import install as do_install
from uet_git.hooks.githooks import uninstall as do_uninstall


@click.group()
def cmd() -> None:
    """Install or remove the git hooks that run `uet check`: pre-merge-commit checks what a
    `git merge` brings in, pre-push what a push sends. They are written where git looks for
    hooks (core.hooksPath, else .git/hooks) and call uet through this Python interpreter.

    An existing hook is never overwritten: it is chained. It is renamed to
    <hook>.uet-chained and runs first (its failure stops the merge or push); uninstall puts it
    back. git skips pre-merge-commit for fast-forward merges and for conflicted merges committed
    later; pre-push checks those commits. `git merge --no-verify` bypasses the hooks."""


@cmd.command()
def install() -> None:
    """Install pre-merge-commit and pre-push hooks (chaining existing ones)."""
    for line in do_install(Repo.open(".")):
        click.echo(line)


@cmd.command()
def uninstall() -> None:
    """Remove the uet hooks and restore the hooks they chained."""
    for line in do_uninstall(Repo.open(".")):
        click.echo(line)
