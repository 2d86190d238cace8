"""``tool: opencode`` (AI-TOOLS.md): ``opencode run`` in the worktree, permissions granted
(without ``--auto`` every permission is auto-rejected and it still exits 0), JSON events on
stdout. The command line::

    opencode run --dir WORKTREE --auto --format json [-m PROVIDER/MODEL] < prompt.md

Its JSON events are kept as the ``opencode.jsonl`` evidence; an ``error`` event (or an event
with an ``error`` field), a rejected permission, or no event at all fails the attempt even on
exit 0. The model is ``metadata.model``, else ``[presets.opencode] model``."""

from __future__ import annotations

import json

from uet_git.spec.models import Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    named_executable,
    no_problem,
    one_line,
    preset_spec,
)

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "opencode"


spec = preset_spec
problem = no_problem
executable = named_executable


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
