"""``tool: shell``: the workstream's ``command``, a string (run by ``sh -c``) or an argv list."""

from __future__ import annotations

from uet_git.spec.models import ToolDef, Workstream
from uet_git.workers.tools.base import Call, Invocation, ToolSpec, first_word
from uet_git.workers.tools.base import no_result_check as check_result

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]


def spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    return ToolSpec(name, "shell")


def problem(ws: Workstream, spec: ToolSpec) -> str | None:
    cmd = ws.command
    if cmd is None or (isinstance(cmd, str) and not cmd.strip()) or (
            isinstance(cmd, list) and (not cmd or not str(cmd[0]).strip())):
        return "tool shell needs a command"
    return None


def executable(ws: Workstream, spec: ToolSpec) -> str | None:
    return first_word(ws.command) if ws.command is not None else None


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    if ws.command is None:
        raise ValueError("tool shell needs a command")
    return Invocation(ws.command if isinstance(ws.command, str) else list(ws.command))
