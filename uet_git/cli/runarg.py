"""RUN given the same way on every command: positional (canonical, like `uet status RUN`,
`uet land RUN`), with ``--run RUN`` kept on the commands that take a workstream first
(`uet show WS RUN` = `uet show WS --run RUN`)."""

from __future__ import annotations

from uet_git.errors import UetError

RUN_HELP = "The run (default: the latest); same as the RUN argument, which is canonical."


def pick_run(positional: str | None, option: str | None) -> str | None:
    """The run a command was given, positional or ``--run``; both naming different runs is a
    one-line error."""
    if positional and option and positional != option:
        raise UetError(f"two runs given: {positional} (argument) and {option} (--run); "
                       "give one")
    return positional or option
