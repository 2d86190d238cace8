"""``tool: gemini`` (AI-TOOLS.md, Gemini CLI): headless, edits approved, the worktree trusted
(a fresh worktree is an untrusted folder: without ``--skip-trust`` gemini exits 0 with no
edits), JSON output. The command line::

    gemini --approval-mode=yolo --skip-trust -o json [-m M] < prompt.md

Its documented exit codes: 0 success, 1 general error, 41 authentication failed, 42 bad input,
52 configuration error, 53 turn limit reached, 130 cancelled; any non-zero one fails the
attempt. On exit 0 its JSON (kept as the ``result.json`` evidence) must hold a ``response`` and
no ``error``. The model is ``metadata.model``, else ``[presets.gemini] model``."""

from __future__ import annotations

from uet_git.spec.models import Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    last_json_object,
    named_executable,
    no_problem,
    one_line,
    preset_spec,
)

__all__ = ["EXIT_CODES", "check_result", "executable", "invocation", "problem", "spec"]

NAME = "gemini"
EXIT_CODES = {0: "success", 1: "general error", 41: "authentication failed", 42: "bad input",
              52: "configuration error", 53: "turn limit reached", 130: "cancelled"}


spec = preset_spec
problem = no_problem
executable = named_executable


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    cmd = [NAME, "--approval-mode=yolo", "--skip-trust", "-o", "json"]
    if call.model:
        cmd += ["-m", call.model]
    return Invocation(cmd, {}, call.prompt_file, "worktree", check_result,
                      {"result.json": call.log_dir / "tool.stdout"}, "stdin (the prompt file)")


def check_result(stdout: bytes) -> str | None:
    """gemini ``-o json`` prints one object with ``response`` (and ``stats``); an ``error``
    object, or no JSON, is a failure even with exit 0."""
    obj = last_json_object(stdout)
    if obj is None:
        return "gemini printed no JSON result (did its flags change?)"
    err = obj.get("error")
    if err:
        msg = err.get("message") if isinstance(err, dict) else err
        return f"gemini reported an error: {one_line(str(msg or err))}"
    if "response" not in obj:
        return "gemini's JSON has no response"
    return None
