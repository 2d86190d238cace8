"""``uet validate [PATH]...``: load workstreams, build the plan, check tools; every problem at
once, one per line.

Output (stdout): each error as ``path[:id]: field: problem``, then each warning prefixed
``warning:``, then a summary line (``--json``: one object, docs/json.md). Exit 2 if there is
any error, else 0 (warnings never fail).
Works outside a git repository: ``uet.toml`` and the default ``workstreams/`` directory are then
looked up in the current directory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from uet_git.cli._common import echo_json, project_root
from uet_git.errors import EXIT_INVALID
from uet_git.plan.dag import PlanError, build_plan
from uet_git.plan.overlap import predict_conflicts
from uet_git.spec.load import config_issues, default_paths, load_workstreams, seed_env_notices
from uet_git.workers.tools import check_tool


def display(path: Path, cwd: Path) -> Path:
    """``path`` relative to ``cwd`` when it is below it, so messages stay short."""
    try:
        return Path(os.path.relpath(path, cwd)) if path.is_relative_to(cwd) else path
    except ValueError:
        return path


@click.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json.md); the exit code is the same.")
def cmd(paths: tuple[Path, ...], as_json: bool) -> None:
    """Validate workstream files (PATHS: files or directories; default: uet.toml [run]
    workstreams, i.e. workstreams/ at the repository root): schema, ids, scopes, dependencies
    (unknown, self, cycles), tools. Prints every error at once; exit 2 if any."""
    cwd = Path.cwd()
    root, _ = project_root(cwd)
    config, cfg_issues = config_issues(root)
    errors = [str(i) for i in cfg_issues]
    warnings: list[str] = []
    targets = list(paths) or [display(p, cwd) for p in default_paths(root, config)]
    loaded = load_workstreams(targets)
    errors += [str(e) for e in loaded.errors]
    warnings += [str(w) for w in loaded.warnings]

    n_waves = None
    try:
        plan = build_plan(loaded.workstreams)
    except PlanError as exc:
        errors += list(getattr(exc, "problems", None) or str(exc).splitlines())
    else:
        n_waves = len(plan.waves())
        warnings += predict_conflicts(plan, loaded.workstreams)

    for ws in loaded.workstreams:
        problem = check_tool(ws, config)
        if problem:
            errors.append(f"{ws.source}:{ws.id}: tool: {problem}")

    warnings += seed_env_notices(os.environ)
    n = len(loaded.workstreams)
    if as_json:
        echo_json({"ok": not errors, "workstreams": [ws.id for ws in loaded.workstreams],
                   "waves": n_waves if not errors else None, "errors": errors,
                   "warnings": warnings})
        if errors:
            sys.exit(EXIT_INVALID)
        return
    for e in errors:
        click.echo(e)
    for w in warnings:
        click.echo(f"warning: {w}")
    summary = f"{n} workstream{'s' if n != 1 else ''}"
    if n_waves is not None and not errors:
        summary += f" in {n_waves} wave{'s' if n_waves != 1 else ''}"
    summary += (
        f", {len(errors)} error{'s' if len(errors) != 1 else ''}, "
        f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
    )
    click.echo(("invalid: " if errors else "ok: ") + summary)
    if errors:
        sys.exit(EXIT_INVALID)
