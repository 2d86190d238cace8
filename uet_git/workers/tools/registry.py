"""The tool kinds uet knows, and the three things the engine asks of a workstream's tool:
``resolve_tool``, ``check_tool`` (before a run) and ``build_invocation`` (per attempt).

Adding a preset is adding its module (satisfying ``base.Tool``) and one line in ``TOOLS``.
A ``[tools.NAME]`` in uet.toml is a ``template`` tool and wins over a preset of that name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from uet_git.spec.models import Config, Workstream
from uet_git.workers.tools import aider, claude, codex, shell, template
from uet_git.workers.tools.base import Call, Invocation, Tool, ToolSpec, model_of, scope_files

TOOLS: dict[str, Tool] = {
    "shell": shell,
    "aider": aider,
    "claude": claude,
    "codex": codex,
}
TEMPLATE: Tool = template

BUILTIN = tuple(TOOLS)
PRESETS = tuple(n for n in TOOLS if n != "shell")


def lookup(ws: Workstream, config: Config) -> tuple[Tool, ToolSpec]:
    """The tool kind and spec a workstream names. Raises ValueError for an unknown name."""
    name = ws.tool
    if name in config.tools:
        return TEMPLATE, TEMPLATE.spec(name, config.tools[name])
    tool = TOOLS.get(name)
    if tool is None:
        known = ", ".join([*BUILTIN, *sorted(config.tools)])
        raise ValueError(f"unknown tool {name!r} (known: {known})")
    return tool, tool.spec(name, None)


def resolve_tool(ws: Workstream, config: Config) -> ToolSpec:
    """The tool a workstream names. Raises ValueError for an unknown name."""
    return lookup(ws, config)[1]


def check_tool(ws: Workstream, config: Config) -> str | None:
    """The one-line problem that would stop the workstream's tool from running, or None:
    unknown tool, shell without a command, AI tool without a prompt, executable not on PATH.
    Conservative: a command it cannot judge (shell syntax, relative paths) passes."""
    try:
        tool, spec = lookup(ws, config)
    except ValueError as exc:
        return str(exc)
    problem = tool.problem(ws, spec)
    if problem is not None:
        return problem
    if spec.needs_prompt and not (ws.prompt or "").strip():
        return f"tool {spec.name} needs a prompt"
    exe = tool.executable(ws, spec)
    if exe is not None:
        path_var = ws.env.get("PATH", os.environ.get("PATH", os.defpath))
        if "/" in exe:
            if os.path.isabs(exe) and not os.access(exe, os.X_OK):
                return f"executable {exe!r} does not exist or is not executable"
        elif shutil.which(exe, path=path_var) is None:
            return f"executable {exe!r} not found on PATH"
    return None


def build_invocation(ws: Workstream, config: Config, *, worktree: Path, prompt_file: Path,
                     log_dir: Path) -> Invocation:
    """The command, environment, stdin and output kind for running ``ws`` in ``worktree``.

    ``prompt_file`` and ``log_dir`` must lie outside the worktree (or the snapshot takes them).
    The prompt file is written from ``ws.prompt`` only if the caller has not written it."""
    tool, spec = lookup(ws, config)
    log_dir.mkdir(parents=True, exist_ok=True)
    if not prompt_file.exists():
        prompt_file.parent.mkdir(parents=True, exist_ok=True)
        prompt_file.write_text(ws.prompt or "")
    call = Call(Path(worktree), prompt_file, log_dir, model_of(ws), scope_files(ws))
    return tool.invocation(ws, spec, call)
