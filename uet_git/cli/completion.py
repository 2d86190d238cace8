"""`uet completion bash|zsh|fish`: print the shell completion script (click's own), which
completes commands, options, run ids and workstream ids (``cli/complete.py``).

Install: ``eval "$(uet completion bash)"`` in ~/.bashrc, ``eval "$(uet completion zsh)"`` in
~/.zshrc, ``uet completion fish > ~/.config/fish/completions/uet.fish``."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
PROG = "uet"
COMPLETE_VAR = "_UET_COMPLETE"


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def cmd(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish): commands, options, run ids
    and workstream ids complete on TAB. Add `eval "$(uet completion bash)"` to ~/.bashrc
    (zsh: the same in ~/.zshrc; fish: `uet completion fish >
    ~/.config/fish/completions/uet.fish`)."""
    cls = get_completion_class(shell)
    assert cls is not None  # every choice is one of click's shells
    root = click.get_current_context().find_root().command
    comp = cls(root, {}, PROG, COMPLETE_VAR)
    click.echo(comp.source())
