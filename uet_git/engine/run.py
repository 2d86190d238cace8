"""Transitional: the old entry points, until the CLI calls ``uet_git.commands.run.execute_run``
with its own Reporter (and renders ``RunResult.dry_run``) and resume imports ``drive`` from
``uet_git.commands.run``. Delete this module then; nothing new may import it."""

from __future__ import annotations

from typing import Any

from uet_git.cli.render import Reporter
from uet_git.commands import run as run_command
from uet_git.engine.inputs import load_inputs, workstreams_from_record
from uet_git.engine.loop import make_pool
from uet_git.engine.options import RunOptions, RunResult
from uet_git.gitrepo.repo import Repo

__all__ = ["drive", "execute_run", "load_inputs", "make_pool", "workstreams_from_record"]


def execute_run(repo: Repo, options: RunOptions) -> RunResult:
    reporter = Reporter(options.output)
    result = run_command.execute_run(repo, options, reporter)
    if result.dry_run is not None:
        if reporter.mode == "json":
            reporter._emit_json(result.dry_run.record)
        else:
            reporter._write("\n".join(result.dry_run.lines) + "\n")
    return result


def drive(*args: Any, reporter: Reporter, **kw: Any) -> RunResult:
    return run_command.drive(*args, observer=reporter, **kw)
