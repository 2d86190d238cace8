"""``tool: claude`` (AI-TOOLS.md): ``-p`` with the prompt on stdin, JSON output, edits accepted,
Bash allowed only for the acceptance commands, no commits or pushes, ``metadata.max_turns``
turns (default 50). ``is_error`` in its JSON is a failure even with exit 0.

With an API key (``ANTHROPIC_API_KEY``) and no ``CLAUDE_CONFIG_DIR`` set, each run gets its
own config dir under the log dir: parallel instances corrupt a shared ``~/.claude.json``. With
an OAuth login the user's dir is kept (a fresh one has no credentials)."""

from __future__ import annotations

from uet_git.spec.models import ToolDef, Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    has_var,
    last_json_object,
    mkdir,
    one_line,
)

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "claude"
MAX_TURNS = 50


def spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    return ToolSpec(name, "preset", needs_prompt=True)


def problem(ws: Workstream, spec: ToolSpec) -> str | None:
    return None


def executable(ws: Workstream, spec: ToolSpec) -> str | None:
    return NAME


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    turns = ws.metadata.get("max_turns", MAX_TURNS)
    cmd = [NAME, "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
           "--allowedTools", "Read", "Edit", "Write",
           *[f"Bash({c} *)" for c in ws.acceptance],
           "--disallowedTools", "Bash(git commit *)", "Bash(git push *)",
           "--max-turns", str(int(turns)), "--no-session-persistence"]
    if call.model:
        cmd += ["--model", call.model]
    env: dict[str, str] = {}
    if has_var("ANTHROPIC_API_KEY", ws) and not has_var("CLAUDE_CONFIG_DIR", ws):
        env["CLAUDE_CONFIG_DIR"] = str(mkdir(call.log_dir / "claude-config"))
    return Invocation(cmd, env, call.prompt_file, "worktree", check_result)


def check_result(stdout: bytes) -> str | None:
    """claude ``-p --output-format json`` prints one JSON object; ``is_error`` true (possible
    with exit 0) or no JSON at all is a failure."""
    obj = last_json_object(stdout)
    if obj is None:
        return "claude printed no JSON result (did its flags change?)"
    if obj.get("is_error"):
        what = obj.get("result") or obj.get("subtype") or "is_error"
        return f"claude reported an error: {one_line(str(what))}"
    subtype = obj.get("subtype")
    if isinstance(subtype, str) and subtype.startswith("error"):
        return f"claude stopped: {subtype}"
    return None
