"""``tool: aider`` (AI-TOOLS.md): prompt by ``--message-file``, stdin /dev/null, no commits,
no self-upgrade (``--yes-always`` would accept one and exit 0 without running the prompt), no
``.gitignore`` edits. The command line::

    aider --message-file prompt.md --yes-always --no-auto-commits --no-dirty-commits
        --no-gitignore --no-check-update --no-analytics --no-show-model-warnings --no-pretty
        --no-stream --no-fancy-input --no-detect-urls --no-suggest-shell-commands
        --chat-history-file LOG/aider.chat.md --input-history-file LOG/aider.input
        [--model M] [--read FILE]... -- FILES... < /dev/null

FILES are the scope's literal ``allow`` paths, then the tracked files at the base that its glob
entries match (minus ``deny``). ``metadata.read`` adds ``--read`` files; the model is
``metadata.model``, else ``[presets.aider] model``. The chat history is kept as the
``aider.chat.md`` evidence.

aider exits 0 when the model call fails; its output is searched for its error lines
(``litellm.`` exceptions, ``AuthenticationError``, ``API Error``, a model that is not found,
an exhausted quota or context window) and any of them fails the attempt (``tool-failed``)."""

from __future__ import annotations

from uet_git.spec.models import Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    named_executable,
    no_problem,
    output_problem,
    preset_spec,
    str_list,
)

__all__ = ["check_result", "executable", "invocation", "problem", "spec"]

NAME = "aider"
GLOB_FILES = True  # the registry passes the files the scope's globs match at the base

# Lines aider prints (to stdout) when the model call failed and it still exits 0. Conservative:
# each is the text of an exception or error aider/litellm raise, not wording a model could
# plausibly write in a normal answer.
ERROR_MARKERS = (
    "litellm.",  # litellm.AuthenticationError, litellm.NotFoundError, litellm.APIError...
    "AuthenticationError",
    "API Error",
    "APIConnectionError",
    "RateLimitError",
    "ContextWindowExceededError",
    "Model not found",
    "LLM Provider NOT provided",
    "The API provider is not able to authenticate you",
    "You exceeded your current quota",
    "Retry timeout exceeded",
)


spec = preset_spec
problem = no_problem
executable = named_executable


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
    cmd += ["--", *call.files, *call.glob_files]
    return Invocation(cmd, {}, None, "worktree", check_result,
                      {"aider.chat.md": log / "aider.chat.md"}, "--message-file (stdin /dev/null)")


def check_result(stdout: bytes) -> str | None:
    """An error line of a failed model call in aider's output (it exits 0 then)."""
    return output_problem(stdout.decode(errors="replace"), ERROR_MARKERS, NAME)
