"""The click group behind ``uet``: parses the command line, loads the one command module it
names (``uet_git/cli/<name>.py``), and turns errors into one line and an exit code. It also
gives a run the loader of its Dask back-end (``commands/backend.py``): loaded, like a command,
only when used, i.e. by a run on a scheduler."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any, cast

import click

from uet_git import __version__
from uet_git.cli import COMMANDS, HELP, helptext
from uet_git.commands.backend import BACKEND, Backend
from uet_git.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UetError


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"uet_git.cli.{entry[0]}")
        command: click.Command = module.cmd
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table so `uet -h SUB...` errors import no command module
        # (and helptext.render lays out the same table).
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, help=HELP,
             context_settings={"help_option_names": list(helptext.HELP_NAMES)})
@click.version_option(__version__, prog_name="uet")
def cli() -> None:
    pass  # the group's text is HELP: cli/helptext.py lays out `uet --help` without click


def dask_backend() -> Backend:
    """The Dask back-end (the coordinator's executor, `uet serve`, the workers' jobs)."""
    return cast(Backend, importlib.import_module("uet_git.commands.executor"))


def main(argv: list[str] | None = None) -> Any:
    """Parse ``argv`` and run the command: user errors one line, internal errors one line and
    exit 3 (the traceback with UET_DEBUG)."""
    backend = BACKEND.set(dask_backend)
    try:
        rv = cli.main(args=argv, prog_name="uet", standalone_mode=False)
    except UetError as err:
        click.echo(f"uet: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("uet: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("uet: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # an internal error: one line, the traceback only when debugging
        debug = os.environ.get("UET_DEBUG", "") not in ("", "0")
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (set UET_DEBUG=1 for a traceback)"
        click.echo(f"uet: internal error: {type(exc).__name__}: {exc}{hint}", err=True)
        sys.exit(EXIT_INTERNAL)
    finally:
        BACKEND.reset(backend)
    # Without standalone mode click returns ctx.exit(code)'s code instead of exiting with it.
    if isinstance(rv, int) and rv:
        sys.exit(rv)
    return rv
