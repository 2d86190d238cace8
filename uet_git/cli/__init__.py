"""The ``uet`` command: a lazy click group, one module per command (``uet_git/cli/<name>.py``
exposing ``cmd``). Commands are imported only when invoked, so ``uet status`` does not pay for
importing the run engine."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

import click

from uet_git import __version__
from uet_git.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UetError

# command name -> module under uet_git.cli (each module defines ``cmd``)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Write uet.toml and an example workstream."),
    "validate": ("validate", "Validate workstream files; report every error at once."),
    "schema": ("schema", "Print the JSON Schema of a workstream file."),
    "convert": ("convert", "Convert legacy workstream bundles to native YAML."),
    "plan": ("plan", "Show the dependency plan: waves, critical path, lower bound."),
    "run": ("run", "Run workstreams in worktrees, verify, integrate and land."),
    "resume": ("resume", "Continue an interrupted run from its refs."),
    "retry": ("retry", "Retry a quarantined or blocked workstream."),
    "drop": ("drop", "Drop a quarantined or blocked workstream."),
    "land": ("land", "Fast-forward the target branch to a run's integration ref."),
    "rollback": ("rollback", "Undo what a run landed."),
    "demo": ("demo", "Build a sample repository and run its workstreams."),
    "runs": ("runs", "List runs recorded in the ledger."),
    "status": ("status", "Show the state of every workstream of a run."),
    "log": ("log", "Show the ledger history of a run or a workstream."),
    "show": ("show", "Show a workstream's record and evidence."),
    "report": ("report", "Write a self-contained HTML report of a run (Gantt, DAG, evidence)."),
    "diff": ("diff", "Show a workstream's change with git show (your pager and colours)."),
    "check": ("check", "Check that uet patches in a revision range were committed by the ledger."),
    "hooks": ("hooks", "Install or uninstall git hooks that consult the ledger."),
    "fsck": ("fsck", "Check the ledger's consistency; --repair resets refs from the ledger."),
    "push": ("push", "Push runs to a remote: one atomic push, the ledger kept consistent."),
    "fetch": ("fetch", "Fetch runs from a remote: state refs replaced, ledgers fast-forwarded."),
    "gc": ("gc", "Remove refs of old finished runs and pack refs."),
    "completion": ("completion", "Print a shell completion script (bash, zsh, fish)."),
    "serve": ("serve", "Serve this repository to remote workers over HTTP, a token per run."),
}


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
        # Short help comes from the table so `uet --help` imports no command module.
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="uet")
def cli() -> None:
    """Run code-changing tools on one repository in parallel worktrees, in dependency order,
    and land only verified results. State lives in git under refs/uet/.

    Exit codes: 0 ok, 1 work failed (quarantined/blocked, check failed), 2 invalid input,
    3 internal error, 130 interrupted."""


def main(argv: list[str] | None = None) -> Any:
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
    # Without standalone mode click returns ctx.exit(code)'s code instead of exiting with it.
    if isinstance(rv, int) and rv:
        sys.exit(rv)
    return rv
