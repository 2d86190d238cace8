"""``uet plan [PATH] [--jobs N] [--json]``: the dependency plan of a workstream set.

Text output: counts, waves, the critical path, total work, the lower bound of the wall time for
N workers, and warnings (loader warnings, predicted scope conflicts; the first 100).

``--json`` prints one object, stable within ``version`` (fields are only ever added):

- ``version`` (int): 1.
- ``nodes`` (list, topological order): per workstream ``id``; ``title``; ``depends_on``
  (distinct dependencies, declaration order); ``estimate`` (seconds, or null); ``weight``
  (what planning used: estimate, else 1); ``wave`` (0-based index into ``waves``);
  ``remaining`` (longest weighted path from this node to the end, its own weight included —
  the scheduler starts the largest first).
- ``edges`` (list of ``[from, to]``): ``from`` must be committed before ``to`` starts, i.e.
  ``to`` depends on ``from``.
- ``waves`` (list of lists of ids): wave 0 has no dependencies; wave k's deepest dependency is
  in wave k-1. Ids sorted within a wave. For display: uet does not run wave by wave.
- ``critical_path``: ``length`` (sum of weights) and ``ids`` (first to last).
- ``jobs`` (int): the worker count used for ``lower_bound``.
- ``lower_bound`` (number): ``max(critical_path.length, total_work / jobs)``.
- ``total_work`` (number): sum of all weights.
- ``warnings`` (list of strings): loader warnings, then predicted conflicts, then notices of
  the old pipeline's environment variables uet does not honour.
- ``order`` (list of ids): the topological order (ties broken by id).
- ``implicit_edges`` (list of ``[from, to, path]``): pairs predicted to conflict (both
  ``scope.allow`` lists can match ``path``) that the plan does not order; with ``[run]
  predicted_conflicts = "serialise"`` (the default) ``to`` waits for ``from``'s commit.
- ``predicted_conflicts`` (string): ``serialise`` or ``ignore``, from uet.toml.
- ``queue_bound``: the bound the verification queue aims at, ``value = max(critical_path,
  tool_work / jobs, (tool_work + verify_work) / (jobs + verify_jobs))`` where each workstream
  counts one verification of ``verify_seconds`` (``--verify-seconds``) after its tool, the
  implicit edges order like dependencies when serialised, and ``verify_jobs`` is ``[verify]
  jobs``.

Weights are seconds where workstreams give ``estimate``; a workstream without one counts 1.

Exit codes: 0 planned (warnings do not fail), 2 invalid input (every problem printed, one per
line, on stderr).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from uet_git.cli._common import echo_json, project_root
from uet_git.cli.render import dag_dot, dag_mermaid, wave_lines, wrap
from uet_git.engine.options import resolve_jobs
from uet_git.errors import EXIT_INVALID, UetError
from uet_git.plan.dag import PlanError, build_plan
from uet_git.plan.overlap import implicit_edges, predict_conflicts
from uet_git.spec.load import load_config, load_workstreams, seed_env_notices
from uet_git.spec.models import Config

MAX_TEXT_WARNINGS = 100  # the text view stays readable; --json has every warning


def _default_path(root: Path, in_git: bool, config: Config) -> Path:
    rel = config.run.workstreams
    path = root / rel
    if path.exists():
        return path
    has_toml = (root / "uet.toml").is_file()
    if has_toml:
        raise UetError(f"{path}: no such directory (uet.toml [run] workstreams = {rel!r}); "
                       "create it or pass PATH")
    where = "this repository" if in_git else "this directory"
    raise UetError(f"no {rel}/ directory in {where} ({root}); run `uet init` to start a "
                   "project, or pass PATH")


def _display(path: Path, cwd: Path) -> Path:
    """``path`` relative to ``cwd`` when below it: messages name files as the user would."""
    try:
        return path.relative_to(cwd) if path.is_relative_to(cwd) else path
    except ValueError:
        return path


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _unit(has_estimates: int, count: int) -> str:
    if has_estimates == 0:
        return "no estimates: 1 per workstream"
    if has_estimates == count:
        return "seconds, from estimates"
    return f"seconds from estimates of {has_estimates} of {count}; 1 for each without one"


@click.command("plan")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Workers for the lower bound (default: UET_JOBS, else PIPELINE_MAX_WORKERS, "
                   "else uet.toml [run] jobs, else 4).")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON object.")
@click.option("--verify-seconds", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds one verification (acceptance + hooks on a candidate) takes, for "
                   "the bound of the verification queue.")
@click.option("--dot", is_flag=True, help="Print the DAG for Graphviz (`| dot -Tsvg`) only.")
@click.option("--mermaid", is_flag=True, help="Print the DAG as a Mermaid flowchart only.")
def cmd(path: Path | None, jobs: int | None, as_json: bool, verify_seconds: float, dot: bool,
        mermaid: bool) -> None:
    """Show the dependency plan of PATH (a workstream file or directory; default: the
    workstreams/ directory, or uet.toml [run] workstreams, at the repository root): waves,
    critical path, counts, the lower bound of the wall time for N workers, and predicted
    scope conflicts."""
    cwd = Path.cwd()
    root, in_git = project_root(cwd)
    config = load_config(root)
    n_jobs = resolve_jobs(jobs, config)
    if path is None:
        path = _display(_default_path(root, in_git, config), cwd)
    elif not path.exists():
        raise UetError(f"{path}: no such file or directory")

    loaded = load_workstreams([path])
    if loaded.errors:
        _fail([str(e) for e in loaded.errors])
    try:
        plan = build_plan(loaded.workstreams)
    except PlanError as err:
        _fail(err.problems)

    warnings = [str(w) for w in loaded.warnings]
    warnings += predict_conflicts(plan, loaded.workstreams)
    warnings += seed_env_notices(os.environ)  # as `uet validate` and `uet run` say them
    implicit = implicit_edges(plan, loaded.workstreams)
    serialise = config.run.predicted_conflicts == "serialise"
    bound = plan.queue_bound(n_jobs, verify=verify_seconds, verify_jobs=config.verify.jobs,
                             extra_edges=[(a, b) for a, b, _ in implicit] if serialise else [])

    if dot or mermaid:  # the DAG alone, critical path marked, serialised conflicts dashed
        soft = [(a, b) for a, b, _ in implicit] if serialise else []
        click.echo((dag_dot if dot else dag_mermaid)(plan, soft))
        return
    if as_json:
        data = plan.to_json(n_jobs, warnings=warnings)
        data["implicit_edges"] = [list(e) for e in implicit]
        data["predicted_conflicts"] = config.run.predicted_conflicts
        data["queue_bound"] = bound.to_json()
        echo_json(data)
        return

    n = len(plan.ids)
    if n == 0:
        click.echo(f"no workstreams in {path}")
        for w in warnings:
            click.echo(f"warning: {w}")
        return
    weights = plan.weights()
    n_est = sum(1 for ws in loaded.workstreams if ws.estimate is not None)
    length, cpath = plan.critical_path(weights)
    total = sum(weights.values())
    waves = plan.waves()
    n_edges = sum(len(d) for d in plan.deps.values())
    click.echo(f"{n} workstream{'s' if n != 1 else ''}, {n_edges} "
               f"dependenc{'ies' if n_edges != 1 else 'y'}, {len(waves)} "
               f"wave{'s' if len(waves) != 1 else ''} ({path})")
    for line in wave_lines(waves):
        click.echo(line)
    click.echo(f"critical path: {_num(length)} ({_unit(n_est, n)})")
    click.echo(wrap("  ", " -> ".join(cpath)))
    click.echo(f"total work: {_num(total)}")
    click.echo(f"lower bound with {n_jobs} worker{'s' if n_jobs != 1 else ''}: "
               f"{_num(max(length, total / n_jobs))} = max(critical path {_num(length)}, "
               f"total {_num(total)} / {n_jobs})")
    if implicit:
        how = "serialised" if serialise else "not used: [run] predicted_conflicts = \"ignore\""
        click.echo(f"implicit edges (predicted conflicts, {how}): {len(implicit)}")
        for a, b, hit in implicit[:MAX_TEXT_WARNINGS]:
            click.echo(f"  {a} -> {b} (both may change {hit})")
        if len(implicit) > MAX_TEXT_WARNINGS:
            click.echo(f"  ... {len(implicit) - MAX_TEXT_WARNINGS} more (uet plan --json)")
    vj = bound.verify_jobs
    click.echo(f"bound of the verification queue ({_num(verify_seconds)} s per verification, "
               f"--verify-seconds): {_num(bound.value)} = max(critical path "
               f"{_num(bound.critical)}, tools {_num(bound.tool_work)} / {n_jobs}, (tools + "
               f"verifications {_num(bound.verify_work)}) / ({n_jobs} + {vj} verify jobs))")
    if warnings:
        click.echo(f"warnings ({len(warnings)}):")
        for w in warnings[:MAX_TEXT_WARNINGS]:
            click.echo(f"  {w}")
        if len(warnings) > MAX_TEXT_WARNINGS:
            click.echo(f"  ... {len(warnings) - MAX_TEXT_WARNINGS} more (uet plan --json lists "
                       "them all)")
    else:
        click.echo("warnings: none")


def _fail(problems: list[str]) -> None:
    """Print every problem on its own line and exit 2 (no traceback)."""
    for p in problems:
        click.echo(f"uet: {p}", err=True)
    sys.exit(EXIT_INVALID)

