"""What ``uet run --dry-run`` shows: the order workstreams would start in, the critical path,
the waves and each workstream's tool, as data; the CLI renders it (``lines`` as text, ``record``
as the JSON object). Nothing is written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uet_git.ledger.words import plural
from uet_git.plan.dag import Plan
from uet_git.spec.load import seed_env_notices
from uet_git.spec.models import Config
from uet_git.workers.tools import config_dir_notices, describe_invocation, resolve_tool


@dataclass
class DryRunView:
    order: list[str]  # the ids in the order they would start
    lines: list[str] = field(default_factory=list)  # the text view, one line each
    record: dict[str, Any] = field(default_factory=dict)  # the JSON view ("event": "dry-run")


def dry_run_view(plan: Plan, include: set[str], jobs: int, target: str, base: str,
                 weights: Mapping[str, float], warnings: list[str],
                 config: Config, repo_root: Path | None = None) -> DryRunView:
    """What would run, in the order it would start."""
    # The critical path and the bound of what runs: a workstream --only leaves out weighs 0.
    w = {i: (x if i in include else 0.0) for i, x in plan.weights(weights).items()}
    length, path = plan.critical_path(w)
    path = [i for i in path if i in include]
    remaining = plan.remaining(w)  # once: inside the sort key it made the sort quadratic
    order = sorted(include, key=lambda i: (-remaining[i], plan.index[i]))
    lines = [f"dry run: {plural(len(include), 'workstream')}, {plural(jobs, 'worker')}, "
             f"target {target} at "
             f"{base[:12]}; nothing is written",
             f"critical path: {length:g} ({' -> '.join(path)})",
             f"lower bound with {plural(jobs, 'worker')}: "
             f"{plan.lower_bound(jobs, w):g}"]
    # Numbered as `uet plan` numbers them (wave 1 has no dependencies), the plan's numbers
    # kept when --only leaves a wave out, so the two views name the same wave the same way.
    waves = [[i for i in wave if i in include] for wave in plan.waves()]
    for n, wave in enumerate(waves, 1):
        if wave:
            lines.append(f"wave {n}: {' '.join(wave)}")
    items = []
    for ws_id in plan.ids:
        if ws_id not in include:
            continue
        ws = plan.workstreams[ws_id]
        try:
            tool = getattr(resolve_tool(ws, config), "name", ws.tool)
        except Exception:  # a tool check_tools let through as a warning: show its name
            tool = ws.tool
        cmd = ws.command if isinstance(ws.command, str) else " ".join(ws.command or [])
        deps = ", ".join(plan.deps[ws_id]) or "-"
        lines.append(f"  {ws_id}: tool {tool}{': ' + cmd if cmd else ''}; after {deps}")
        try:
            cmdline, prompt_via = describe_invocation(ws, config, repo_root, base)
        except Exception:  # an unknown tool check_tools let through: nothing to show
            cmdline, prompt_via = "", ""
        if cmdline and ws.tool != "shell":
            lines.append(f"    runs: {cmdline}")
            lines.append(f"    prompt: {prompt_via}")
        items.append({"id": ws_id, "tool": tool, "command": ws.command,
                      "depends_on": plan.deps[ws_id], "command_line": cmdline,
                      "prompt_via": prompt_via})
    # What a real run says at its start: the old pipeline's variables uet does not honour,
    # and the presets that get a config dir of their own because an API key is set.
    selected = [plan.workstreams[i] for i in plan.ids if i in include]
    notices = [*seed_env_notices(os.environ), *config_dir_notices(selected, config)]
    warnings = [*warnings, *(n for n in notices if n not in warnings)]
    lines.extend(f"warning: {w}" for w in warnings)
    record = {"event": "dry-run", "order": order, "workstreams": items, "critical_path": path,
              "waves": waves,
              "jobs": jobs, "target": target, "base": base, "warnings": warnings}
    return DryRunView(order, lines, record)
