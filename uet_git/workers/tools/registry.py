"""The tool kinds uet knows, and the three things the engine asks of a workstream's tool:
``resolve_tool``, ``check_tool`` (before a run) and ``build_invocation`` (per attempt).

Adding a preset is adding its module (satisfying ``base.Tool``) and one line in ``TOOLS``.
A ``[tools.NAME]`` in uet.toml is a ``template`` tool and wins over a preset of that name; it
keeps the preset's result check (claude's ``is_error``...) unless it declares its own
``success``, so overriding the command line never makes a refusal look like a success.
``[presets.NAME]`` holds a preset's settings (model, claude's budget and extra tools).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from pathlib import Path

from uet_git.gitrepo.odb import walk_tree
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.spec.models import Config, PresetConfig, Workstream
from uet_git.spec.scope import in_scope
from uet_git.workers.tools import aider, claude, codex, gemini, opencode, shell, template
from uet_git.workers.tools.base import (
    GLOB_CHARS,
    Call,
    Invocation,
    Tool,
    ToolSpec,
    has_var,
    model_of,
    scope_files,
)

TOOLS: dict[str, Tool] = {
    "shell": shell,
    "aider": aider,
    "claude": claude,
    "codex": codex,
    "gemini": gemini,
    "opencode": opencode,
}
# Presets that give a fresh config dir to each run when an API key is set (and no dir is):
# (preset, key variables, config dir variable)
_FRESH_CONFIG = (("claude", ("ANTHROPIC_API_KEY",), "CLAUDE_CONFIG_DIR"),
                 ("codex", ("CODEX_API_KEY",), "CODEX_HOME"))
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
    preset = config.presets.get(ws.tool, PresetConfig())
    globbed = glob_files(Path(worktree), ws) if getattr(tool, "GLOB_FILES", False) else []
    call = Call(Path(worktree), prompt_file, log_dir, model_of(ws) or preset.model,
                scope_files(ws), globbed, preset)
    inv = tool.invocation(ws, spec, call)
    preset_tool = TOOLS.get(ws.tool)
    if (spec.kind == "config" and inv.result_check is None and preset_tool is not None
            and spec.tooldef is not None and spec.tooldef.success is None):
        inv.result_check = preset_tool.check_result  # [tools.claude] keeps claude's check
    return inv


def glob_files(worktree: Path, ws: Workstream, limit: int = 500, rev: str = "HEAD"
               ) -> list[str]:
    """The tracked files at the worktree's ``rev`` (HEAD: the base) that the scope's glob
    ``allow`` entries match, minus ``deny``, besides its literal files; at most ``limit`` (a
    prompt naming a whole tree is no edit list)."""
    globs = glob_entries(ws)
    if not globs:
        return []
    literal = set(scope_files(ws))
    only_globs = ws.scope.model_copy(update={"allow": globs})
    out: list[str] = []
    try:
        repo = Repo.open(worktree)
    except GitError:
        return []  # not a checkout (a tool run outside uet's pool): only the literal files
    for entry in walk_tree(repo, rev):
        if entry.path not in literal and in_scope(only_globs, entry.path):
            out.append(entry.path)
            if len(out) >= limit:
                break
    return out


def config_dir_notices(workstreams: list[Workstream], config: Config) -> list[str]:
    """One line per preset that will run with a fresh config dir of its own because an API
    key is set (the user's login and settings of that tool are then not used)."""
    notices = []
    for name, keys, dir_var in _FRESH_CONFIG:
        users = [ws for ws in workstreams if ws.tool == name and name not in config.tools]
        for ws in users:
            key = next((k for k in keys if has_var(k, ws)), None)
            if key is not None and not has_var(dir_var, ws):
                notices.append(
                    f"{name}: {key} is set, so each attempt gets its own {dir_var} under its "
                    f"log dir (your ~/.{name} settings and login are not used; set {dir_var} "
                    f"to choose one)")
                break
    return notices


def describe_invocation(ws: Workstream, config: Config, repo_root: Path | None = None,
                        base: str = "HEAD") -> tuple[str, str]:
    """The command line ``ws`` would run (shell-quoted; the worktree as ``$WORKTREE``, its log
    dir as ``$LOG``; the files its scope globs match at ``base`` in ``repo_root``, or a
    placeholder without one) and how the prompt reaches the tool, for ``uet run --dry-run``.
    Writes nothing outside a temporary directory."""
    tool, spec = lookup(ws, config)
    with tempfile.TemporaryDirectory(prefix="uet-dry-") as tmp:
        log, wt = Path(tmp) / "log", Path(tmp) / "worktree"
        preset = config.presets.get(ws.tool, PresetConfig())
        call = Call(wt, log / "prompt.md", log, model_of(ws) or preset.model, scope_files(ws),
                    [], preset)
        inv = tool.invocation(ws, spec, call)
        text = inv.cmd if isinstance(inv.cmd, str) else shlex.join(map(str, inv.cmd))
        text = text.replace(str(wt), "$WORKTREE").replace(str(log), "$LOG")
    if getattr(tool, "GLOB_FILES", False) and glob_entries(ws):
        matched = glob_files(repo_root, ws, rev=base) if repo_root is not None else None
        text += (" " + shlex.join(matched) if matched
                 else " <tracked files matching " + " ".join(glob_entries(ws)) + ">")
    if inv.stdin_path is not None:
        text += " < $LOG/prompt.md"
    via = inv.prompt_via or ("stdin (the prompt file)" if inv.stdin_path is not None
                             else "UET_PROMPT / UET_PROMPT_FILE in the environment")
    return text, via


def glob_entries(ws: Workstream) -> list[str]:
    return [p for p in ws.scope.allow if GLOB_CHARS.search(p) or p.endswith("/")]
