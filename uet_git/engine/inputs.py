"""What a run starts from: the workstream files and uet.toml (``load_inputs``), the ids it
covers (``select_only``), its tools (``check_tools``), its target (``resolve_target``), the
durations earlier runs measured (``history_weights``), and what the ledger records of the plan
(``plan_record``, read back by ``workstreams_from_record``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from uet_git.engine.options import RunOptions
from uet_git.engine.pipeline import WORKER_SECONDS
from uet_git.errors import UetError
from uet_git.gitrepo.repo import Repo
from uet_git.hooks.premerge import config_at
from uet_git.ledger import query
from uet_git.plan.dag import Plan
from uet_git.spec.load import default_paths, load_config, load_workstreams
from uet_git.spec.models import Config, Workstream
from uet_git.workers.tools import check_tool

HISTORY_RUNS = 3  # earlier runs consulted for durations (each costs a ledger walk)


def load_inputs(repo: Repo, options: RunOptions) -> tuple[Config, list[Workstream], list[str]]:
    """uet.toml and the workstreams; every spec error at once, as a UetError."""
    config = load_config(repo.workdir)
    paths = [Path(p) for p in options.paths] if options.paths else default_paths(repo.workdir,
                                                                                 config)
    for p in paths:
        if not p.exists():
            raise UetError(f"{p}: no such file or directory (workstream files are read from "
                           f"[run] workstreams in uet.toml, default `workstreams/`)")
    loaded = load_workstreams(paths)
    if loaded.errors:
        shown = [str(e) for e in loaded.errors[:20]]
        more = len(loaded.errors) - len(shown)
        raise UetError("\n".join(shown + ([f"... and {more} more"] if more > 0 else [])))
    if not loaded.workstreams:
        raise UetError(f"no workstreams found in {', '.join(map(str, paths))}")
    return config, loaded.workstreams, [str(w) for w in loaded.warnings]


# The sections of uet.toml that judge a patch or confine a tool. A run takes them from its base
# commit: an uncommitted edit in the checkout (a tool's, or a slip) must not switch a check off.
CHECK_SECTIONS = ("tools", "hooks", "verify", "breaker", "sandbox")


def checks_config(repo: Repo, checkout: Config, base: str, *,
                  from_checkout: bool) -> tuple[Config, str | None]:
    """The run's configuration: ``[run]`` and ``[worktree]`` from the checkout's uet.toml, the
    check sections from the one committed at ``base`` (all from the checkout when the user asks
    with ``from_checkout``). The second value is a one-line warning when the checkout's check
    sections differ from the base's and are therefore not used."""
    if from_checkout:
        return checkout, None
    committed = config_at(repo, base)
    update = {name: getattr(committed, name) for name in CHECK_SECTIONS}
    differ = [name for name in CHECK_SECTIONS if getattr(checkout, name) != update[name]]
    warning = None
    if differ:
        warning = (f"uet.toml: the checkout's {', '.join(f'[{d}]' for d in differ)} differ from "
                   f"the base commit {base[:12]}'s and are not used (the checks come from the "
                   "base; commit them, or pass --checks-from-checkout)")
    return checkout.model_copy(update=update), warning


def select_only(plan: Plan, only: Iterable[str] | None) -> set[str]:
    """The ids a run covers: ``only`` and everything they depend on."""
    if not only:
        return set(plan.ids)
    wanted = [i.strip() for item in only for i in str(item).split(",") if i.strip()]
    unknown = [i for i in wanted if i not in plan.workstreams]
    if unknown:
        raise UetError(f"--only: unknown workstream {', '.join(unknown)} "
                       f"(known: {', '.join(plan.ids[:10])}{' ...' if len(plan.ids) > 10 else ''})")
    out: set[str] = set()
    for i in wanted:
        out.add(i)
        out |= plan.ancestors(i)
    return out


def check_tools(plan: Plan, ids: Iterable[str], config: Config) -> list[str]:
    """An unknown tool, a shell workstream without a command or an AI tool without a prompt is
    invalid input (UetError, exit 2). An executable missing from PATH is returned as a warning:
    that workstream becomes ``tool-failed`` when it runs, and the rest of the run goes on."""
    problems, warnings = [], []
    for ws_id in sorted(ids, key=plan.index.__getitem__):
        ws = plan.workstreams[ws_id]
        problem = check_tool(ws, config)
        if problem:
            where = f"{ws.source}:{ws.id}" if ws.source else ws.id
            if problem.startswith("executable "):
                warnings.append(f"{where}: tool: {problem}; it will fail as tool-failed")
            else:
                problems.append(f"{where}: tool: {problem}")
    if problems:
        raise UetError("\n".join(problems))
    return warnings


def resolve_target(repo: Repo, options: RunOptions, config: Config) -> tuple[str, str]:
    """``(branch, its commit)``: --target, else uet.toml [run] target, else the branch checked
    out in the main worktree."""
    target = options.target or config.run.target
    if target is None:
        target = repo.current_branch()
        if target is None:
            if repo.rev_parse("HEAD") is None and not repo.list_refs("refs/heads/"):
                raise UetError(f"{repo.workdir}: the repository has no commits yet; commit "
                               "something first (uet works from a base commit)")
            raise UetError(f"{repo.workdir}: HEAD is detached; pass --target BRANCH "
                           "(or set [run] target in uet.toml)")
    target = target.removeprefix("refs/heads/")
    oid = repo.read_ref(f"refs/heads/{target}")
    if oid is None:
        if not repo.list_refs("refs/heads/"):
            raise UetError(f"{repo.workdir}: the repository has no commits yet; commit "
                           "something first (uet works from a base commit)")
        raise UetError(f"--target {target}: no such branch in {repo.workdir}")
    return target, oid


def history_weights(repo: Repo, plan: Plan, ids: Iterable[str]) -> dict[str, float]:
    """Durations measured by earlier runs (the worker's time, ``Uet-Worker-Seconds`` of the
    ``queued`` transition) for workstreams without an ``estimate``: the latest run that ran
    each id, reading at most HISTORY_RUNS runs."""
    missing = {i for i in ids if plan.workstreams[i].estimate is None}
    out: dict[str, float] = {}
    if not missing:
        return out
    try:
        runs = query.run_ids(repo)
    except UetError:
        return out
    for run in reversed(runs[-HISTORY_RUNS:]):
        try:
            events = query.history(repo, run)
        except Exception:  # an unreadable old run only costs us a weight
            continue
        found: dict[str, float] = {}
        for e in events:
            raw = e.trailers.get(WORKER_SECONDS)
            if e.ws in missing and e.to == "queued" and raw:
                with contextlib.suppress(ValueError):
                    found[e.ws] = max(float(raw), 0.01)
        out.update(found)
        missing -= set(found)
        if not missing:
            break
    return out


def plan_record(plan: Plan, jobs: int, weights: Mapping[str, float], warnings: list[str],
                ids: set[str], options: Mapping[str, Any]) -> dict[str, Any]:
    """What ``plan.json`` of the ledger holds: the plan, and the workstreams themselves, so a
    resume runs exactly what was planned even if the files changed since."""
    data: dict[str, Any] = dict(plan.to_json(jobs, weights, warnings=warnings))
    data["workstreams"] = []
    for ws_id in plan.ids:
        ws = plan.workstreams[ws_id]
        d = ws.model_dump(mode="json")
        d["source"] = ws.source
        data["workstreams"].append(d)
    data["selected"] = [i for i in plan.ids if i in ids]
    data["options"] = dict(options)
    return data


def workstreams_from_record(record: Mapping[str, Any]) -> list[Workstream]:
    out = []
    for d in record.get("workstreams") or []:
        if not isinstance(d, dict):
            continue
        d = dict(d)
        source = d.pop("source", None)
        ws = Workstream.model_validate(d)
        ws._source = source
        out.append(ws)
    return out
