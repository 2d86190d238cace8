"""The ``uet`` command: a lazy click group, one module per command (``uet_git/cli/<name>.py``
exposing ``cmd``). Commands are imported only when invoked, so ``uet status`` does not pay for
importing the run engine; the group itself (``cli/group.py``, click) is imported only when
there is a command line to parse: ``uet --help`` is laid out by ``cli/helptext.py``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from uet_git.cli import helptext

HELP = """Run code-changing tools on one repository in parallel worktrees, in dependency order,
    and land only verified results. State lives in git under refs/uet/.

    Exit codes: 0 ok, 1 work failed (quarantined/blocked, check failed), 2 invalid input,
    3 internal error, 130 interrupted."""

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


def main(argv: Sequence[str] | None = None) -> object:
    """``uet ARGS`` (``sys.argv[1:]`` by default); exits with the command's code when not 0."""
    args = sys.argv[1:] if argv is None else list(argv)
    if helptext.wanted(args):
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        sys.stdout.write(helptext.render("uet", HELP, rows) + "\n")
        return 0  # as click's help does without standalone mode
    # the CLI's lazy loading (like the commands'): click only when a command line is parsed
    return importlib.import_module("uet_git.cli.group").main(args)
