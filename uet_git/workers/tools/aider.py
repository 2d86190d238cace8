"""``tool: aider`` (AI-TOOLS.md): prompt by ``--message-file``, stdin /dev/null, no commits,
no self-upgrade (``--yes-always`` would accept one and exit 0 without running the prompt), no
``.gitignore`` edits. ``metadata.read`` adds ``--read`` files; the scope's literal files are the
files it may edit. aider has no machine-readable result: the diff decides."""

from __future__ import annotations

from uet_git.spec.models import ToolDef, Workstream
from uet_git.workers.tools.base import Call, Invocation, ToolSpec, str_list
from uet_git.workers.tools.base import no_result_check as check_result

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "aider"


def spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    return ToolSpec(name, "preset", needs_prompt=True)


def problem(ws: Workstream, spec: ToolSpec) -> str | None:
    return None


def executable(ws: Workstream, spec: ToolSpec) -> str | None:
    return NAME


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    log = call.log_dir
    cmd = [NAME, "--message-file", str(call.prompt_file), "--yes-always", "--no-auto-commits",
           "--no-dirty-commits", "--no-gitignore", "--no-check-update", "--no-analytics",
           "--no-show-model-warnings", "--no-pretty", "--no-stream", "--no-fancy-input",
           "--no-detect-urls", "--no-suggest-shell-commands",
           "--chat-history-file", str(log / "aider.chat.md"),
           "--input-history-file", str(log / "aider.input")]
    if call.model:
        cmd += ["--model", call.model]
    for read in str_list(ws.metadata.get("read")):
        cmd += ["--read", read]
    cmd += ["--", *call.files]
    return Invocation(cmd, {}, None, "worktree", None)
