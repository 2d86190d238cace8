"""``tool: claude`` (AI-TOOLS.md): ``-p`` with the prompt on stdin, JSON output, edits accepted,
Bash allowed only for the acceptance commands, no commits or pushes. ``is_error`` in its JSON is
a failure even with exit 0. The command line (prompt file on stdin, stdout kept as the
``result.json`` evidence, which holds the cost, the turns and the session id)::

    claude -p --output-format json --permission-mode acceptEdits
        --allowedTools Read Edit Write 'Bash(<part> *)'... [EXTRA...]
        --disallowedTools 'Bash(git commit *)' 'Bash(git push *)'
        --max-turns N --no-session-persistence [--max-budget-usd B] [--model M] < prompt.md

Claude Code checks each part of a compound command (``a && b``, ``a | b``, ``a; b``) against
the rules on its own, so each acceptance command is split at ``&&``, ``||``, ``|``, ``;``,
``&`` and newlines (outside quotes) into one ``Bash(<part> *)`` rule per part.

Settings in ``uet.toml``::

    [presets.claude]
    model = "claude-sonnet-4-5"        # default when a workstream has no metadata.model
    max_turns = 30                      # default 50; metadata.max_turns wins
    max_budget_usd = 2.5                # --max-budget-usd: stop when an attempt costs more
    extra_allowed_tools = ["Bash(make lint *)", "WebFetch"]

With an API key (``ANTHROPIC_API_KEY``) and no ``CLAUDE_CONFIG_DIR`` set, each run gets its
own config dir under the log dir: parallel instances corrupt a shared ``~/.claude.json``; the
run header says so. With an OAuth login the user's dir is kept (a fresh one has no
credentials)."""

from __future__ import annotations

from uet_git.spec.models import Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ToolSpec,
    has_var,
    last_json_object,
    mkdir,
    named_executable,
    no_problem,
    one_line,
    preset_spec,
)

__all__ = ["allowed_bash_rules", "check_result", "executable", "invocation", "problem", "spec"]

NAME = "claude"
MAX_TURNS = 50


spec = preset_spec
problem = no_problem
executable = named_executable


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    turns = ws.metadata.get("max_turns", call.preset.max_turns or MAX_TURNS)
    cmd = [NAME, "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
           "--allowedTools", "Read", "Edit", "Write", *allowed_bash_rules(ws.acceptance),
           *call.preset.extra_allowed_tools,
           "--disallowedTools", "Bash(git commit *)", "Bash(git push *)",
           "--max-turns", str(int(turns)), "--no-session-persistence"]
    if call.preset.max_budget_usd is not None:
        cmd += ["--max-budget-usd", f"{call.preset.max_budget_usd:g}"]
    if call.model:
        cmd += ["--model", call.model]
    env: dict[str, str] = {}
    if has_var("ANTHROPIC_API_KEY", ws) and not has_var("CLAUDE_CONFIG_DIR", ws):
        env["CLAUDE_CONFIG_DIR"] = str(mkdir(call.log_dir / "claude-config"))
    return Invocation(cmd, env, call.prompt_file, "worktree", check_result,
                      {"result.json": call.log_dir / "tool.stdout"}, "stdin (the prompt file)")


def allowed_bash_rules(commands: list[str]) -> list[str]:
    """One ``Bash(<part> *)`` rule per simple command of each acceptance command, in order,
    without duplicates."""
    rules: list[str] = []
    for command in commands:
        for part in split_compound(command):
            rule = f"Bash({part} *)"
            if rule not in rules:
                rules.append(rule)
    return rules


def split_compound(command: str) -> list[str]:
    """``a && b | c; d`` -> ``[a, b, c, d]``: split at the shell's list and pipe operators
    outside quotes (a backslash escapes the next character)."""
    parts: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(command):
        ch = command[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(command):
                cur.append(command[i + 1])
                i += 1
        elif ch == "\\" and i + 1 < len(command):
            cur += [ch, command[i + 1]]
            i += 1
        elif ch in "'\"":
            quote = ch
            cur.append(ch)
        elif ch == "&" and ((cur and cur[-1] in "<>") or command[i + 1:i + 2] == ">"):
            cur.append(ch)  # 2>&1, &>file: a redirection, not an operator
        elif ch in "&|;\n":
            parts.append("".join(cur))
            cur = []
            if command[i:i + 2] in ("&&", "||"):
                i += 1
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


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
