"""``tool: opencode`` (AI-TOOLS.md): ``opencode run`` in the worktree, permissions granted
(without ``--auto`` every permission is auto-rejected and it still exits 0), JSON events on
stdout. The command line::

    opencode run --dir WORKTREE --auto --format json [-m PROVIDER/MODEL] < prompt.md

Its JSON events are kept as the ``opencode.jsonl`` evidence; an ``error`` event (or an event
with an ``error`` field), a rejected permission, or no event at all fails the attempt even on
exit 0. The model is ``metadata.model``, else ``[presets.opencode] model``."""

from __future__ import annotations

import json

from uet_git.spec.models import ToolDef, Workstream
from uet_git.workers.tools.base import Call, Invocation, ToolSpec, one_line

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "opencode"


def spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    return ToolSpec(name, "preset", needs_prompt=True)


def problem(ws: Workstream, spec: ToolSpec) -> str | None:
    return None


def executable(ws: Workstream, spec: ToolSpec) -> str | None:
    return NAME


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    cmd = [NAME, "run", "--dir", str(call.worktree), "--auto", "--format", "json"]
    if call.model:
        cmd += ["-m", call.model]
    return Invocation(cmd, {}, call.prompt_file, "worktree", check_result,
                      {"opencode.jsonl": call.log_dir / "tool.stdout"}, "stdin (the prompt file)")


def check_result(stdout: bytes) -> str | None:
    events = 0
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith(b"{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict):
            continue
        events += 1
        kind = str(ev.get("type") or "")
        err = ev.get("error")
        if kind == "error" or err:
            msg = (err.get("message") if isinstance(err, dict) else err) or ev.get("message")
            return f"opencode error: {one_line(str(msg or kind))}"
        if "permission" in kind and ("reject" in kind or ev.get("response") == "reject"):
            return f"opencode: a permission was rejected ({kind})"
    if events == 0:
        return "opencode printed no JSON events (did its flags change?)"
    return None
