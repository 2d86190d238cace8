"""``tool: codex`` (AI-TOOLS.md): ``codex exec`` in the worktree with its own workspace-write
sandbox, prompt on stdin (``-``), JSONL events on stdout. ``exec`` never asks for approval.
A ``turn.failed`` or ``error`` event is a failure even with exit 0. The command line::

    codex exec --cd WORKTREE --sandbox workspace-write --ephemeral --color never --json
        --output-last-message LOG/codex-last.md [--model M] - < prompt.md

Its last message (``codex-last.md``) and JSON events (``codex.jsonl``, its stdout) are kept as
evidence. The model is ``metadata.model``, else ``[presets.codex] model``.

With an API key (``CODEX_API_KEY``) and no ``CODEX_HOME`` set, each run gets its own home
under the log dir (parallel OAuth refreshes race; with an OAuth login the user's is kept)."""

from __future__ import annotations

import json

from uet_git.spec.models import Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    has_var,
    mkdir,
    named_executable,
    no_problem,
    one_line,
    preset_spec,
)

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "codex"


spec = preset_spec
problem = no_problem
executable = named_executable


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    cmd = [NAME, "exec", "--cd", str(call.worktree), "--sandbox", "workspace-write",
           "--ephemeral", "--color", "never", "--json",
           "--output-last-message", str(call.log_dir / "codex-last.md")]
    if call.model:
        cmd += ["--model", call.model]
    cmd.append("-")
    env: dict[str, str] = {}
    if has_var("CODEX_API_KEY", ws) and not has_var("CODEX_HOME", ws):
        env["CODEX_HOME"] = str(mkdir(call.log_dir / "codex-home"))
    return Invocation(cmd, env, call.prompt_file, "worktree", check_result,
                      {"codex-last.md": call.log_dir / "codex-last.md",
                       "codex.jsonl": call.log_dir / "tool.stdout"}, "stdin (the prompt file)")


def check_result(stdout: bytes) -> str | None:
    """codex ``exec --json`` prints JSONL events; a ``turn.failed`` or ``error`` event is a
    failure even with exit 0. No event at all means its flags changed or it never ran."""
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
        kind = ev.get("type")
        if kind in ("turn.failed", "error"):
            err = ev.get("error")
            msg = (err.get("message") if isinstance(err, dict) else err) or ev.get("message")
            return f"codex {kind}: {one_line(str(msg or 'no message'))}"
    if events == 0:
        return "codex printed no JSON events (did its flags change?)"
    return None
