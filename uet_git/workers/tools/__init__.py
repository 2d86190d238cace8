"""Tool adapters: how a workstream's tool becomes a command line, an environment and a check.

One module per tool kind, each satisfying ``base.Tool``: ``shell`` (``command`` as ``sh -c``
string or argv), ``template`` (``[tools.NAME]`` in uet.toml, winning over a preset of that
name), and the presets ``aider``, ``claude``, ``codex``, ``gemini``, ``opencode`` (the
non-interactive templates of AI-TOOLS.md, each module's docstring giving its exact command
line; the model from ``metadata.model``, else ``[presets.NAME] model``). ``registry`` lists
them and answers ``resolve_tool`` / ``check_tool`` / ``build_invocation``; ``environment``
holds what every tool gets (``tool_env``, ``worker_port``, ``prepare_repo_for_tools``).

``{files}`` (and aider's file arguments) are the scope ``allow`` entries that are literal paths.
Exit 0 proves nothing for AI tools (AI-TOOLS.md rule 3): ``Invocation.result_check(stdout)``
parses the structured output where one exists and returns a failure reason even on exit 0.
"""

from __future__ import annotations

from uet_git.workers.tools.base import (
    Invocation,
    ResultCheck,
    Tool,
    ToolSpec,
    result_summary,
    scope_files,
)
from uet_git.workers.tools.claude import MAX_TURNS as CLAUDE_MAX_TURNS
from uet_git.workers.tools.claude import check_result as check_claude_output
from uet_git.workers.tools.codex import check_result as check_codex_output
from uet_git.workers.tools.environment import (
    PROMPT_ENV_LIMIT,
    TOOL_EXCLUDES,
    prepare_repo_for_tools,
    tool_env,
    worker_port,
)
from uet_git.workers.tools.registry import (
    BUILTIN,
    PRESETS,
    TOOLS,
    build_invocation,
    check_tool,
    config_dir_notices,
    describe_invocation,
    glob_files,
    resolve_tool,
)
from uet_git.workers.tools.template import expand_template

__all__ = [
    "BUILTIN", "CLAUDE_MAX_TURNS", "PRESETS", "PROMPT_ENV_LIMIT", "TOOLS", "TOOL_EXCLUDES",
    "Invocation", "ResultCheck", "Tool", "ToolSpec", "build_invocation", "check_claude_output",
    "check_codex_output", "check_tool", "config_dir_notices", "describe_invocation",
    "expand_template", "glob_files", "prepare_repo_for_tools",
    "resolve_tool", "result_summary", "scope_files", "tool_env", "worker_port",
]
