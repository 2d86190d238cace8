"""Tool adapters: how a workstream's tool becomes a command line, an environment and a check.

Tools:
- ``shell``: ``command`` as a string (run by ``sh -c``) or an argv list.
- presets ``aider``, ``claude``, ``codex``: the non-interactive templates of AI-TOOLS.md, prompt
  given as a file (on stdin for claude and codex; ``--message-file`` for aider, whose stdin is
  /dev/null). The model comes from the workstream's ``metadata.model``; claude's turn limit from
  ``metadata.max_turns`` (default 50).
- ``[tools.NAME]`` in uet.toml: a ``command`` template (string: shell-quoted substitution, run by
  ``sh -c``; list: one argv element per entry, an entry that is exactly ``{files}`` expands to
  one element per file) with ``{prompt_file}``, ``{files}``, ``{workdir}``, ``{log_dir}`` and
  ``{model}``; ``output = worktree|diff|mbox``; ``stdin = prompt|null``. A uet.toml tool named like
  a preset replaces the preset.

``{files}`` (and aider's file arguments) are the scope ``allow`` entries that are literal paths
(no glob characters, not a directory pattern).

Exit 0 proves nothing for AI tools (AI-TOOLS.md rule 3): ``Invocation.result_check(stdout)``
parses the structured output where one exists (claude's JSON ``is_error``; codex's JSONL
``turn.failed`` / ``error`` events) and returns a failure reason even when the exit code was 0.

Per-user state races between parallel runs (rule 4): when the tool is authenticated by an API key
in the environment (``ANTHROPIC_API_KEY`` for claude, ``CODEX_API_KEY`` for codex) and the user
set no config dir, each run gets its own (``CLAUDE_CONFIG_DIR`` / ``CODEX_HOME`` under the run's
log dir). With OAuth logins the user's config dir is kept, since a fresh one has no credentials.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config, ToolDef, Workstream

PRESETS = ("aider", "claude", "codex")
BUILTIN = ("shell", *PRESETS)
CLAUDE_MAX_TURNS = 50
PROMPT_ENV_LIMIT = 64 * 1024  # one environment string may not exceed 128 KiB on Linux

# Files AI tools drop into a repository; hidden through info/exclude (shared by all worktrees).
TOOL_EXCLUDES = (".aider*",)
_EXCLUDE_HEADER = "# added by uet: files AI coding tools leave in worktrees"

_GLOB_CHARS = re.compile(r"[*?\[\]]")
_PLACEHOLDERS = ("prompt_file", "files", "workdir", "log_dir", "model")
# Shell builtins and keywords: a command starting with one is not checked on PATH.
_SHELL_WORDS_TEXT = """
    ! { } ( ) [ [[ . : alias bg break builtin cd command continue declare echo eval exec exit
    export false fg for function getopts hash if jobs kill let local printf pwd read readonly
    return set shift source test times trap true type typeset ulimit umask unalias unset until
    wait while case select time
"""
_SHELL_WORDS = frozenset(_SHELL_WORDS_TEXT.split())

ResultCheck = Callable[[bytes], str | None]


@dataclass
class ToolSpec:
    """What a workstream's tool is, before it is instantiated for a worktree."""

    name: str
    kind: str  # "shell" | "preset" | "config"
    output: str = "worktree"
    needs_prompt: bool = False
    tooldef: ToolDef | None = None


@dataclass
class Invocation:
    """A ready-to-run tool: ``cmd`` for ``run_process`` (string = ``sh -c``), ``env`` to lay over
    the worker's environment, ``stdin_path`` (None = /dev/null), the ``output`` kind, and an
    optional ``result_check(stdout_bytes) -> failure reason | None``."""

    cmd: str | list[str]
    env: dict[str, str] = field(default_factory=dict)
    stdin_path: Path | None = None
    output: str = "worktree"
    result_check: ResultCheck | None = None


def resolve_tool(ws: Workstream, config: Config) -> ToolSpec:
    """The tool a workstream names. Raises ValueError for an unknown name."""
    name = ws.tool
    if name in config.tools:
        tdef = config.tools[name]
        return ToolSpec(name, "config", tdef.output, _template_needs_prompt(tdef), tdef)
    if name == "shell":
        return ToolSpec(name, "shell")
    if name in PRESETS:
        return ToolSpec(name, "preset", needs_prompt=True)
    known = ", ".join([*BUILTIN, *sorted(config.tools)])
    raise ValueError(f"unknown tool {name!r} (known: {known})")


def check_tool(ws: Workstream, config: Config) -> str | None:
    """The one-line problem that would stop the workstream's tool from running, or None:
    unknown tool, shell without a command, AI tool without a prompt, executable not on PATH.
    Conservative: a command it cannot judge (shell syntax, relative paths) passes."""
    try:
        spec = resolve_tool(ws, config)
    except ValueError as exc:
        return str(exc)
    if spec.kind == "shell":
        cmd = ws.command
        if cmd is None or (isinstance(cmd, str) and not cmd.strip()) or (
                isinstance(cmd, list) and (not cmd or not str(cmd[0]).strip())):
            return "tool shell needs a command"
        exe = _first_word(cmd)
    elif spec.kind == "preset":
        exe = spec.name
    else:
        assert spec.tooldef is not None
        exe = _first_word(spec.tooldef.command)
        if exe is not None and "{" in exe:
            exe = None  # the executable itself is a placeholder
    if spec.needs_prompt and not (ws.prompt or "").strip():
        return f"tool {spec.name} needs a prompt"
    if exe is not None:
        path_var = ws.env.get("PATH", os.environ.get("PATH", os.defpath))
        if "/" in exe:
            if os.path.isabs(exe) and not os.access(exe, os.X_OK):
                return f"executable {exe!r} does not exist or is not executable"
        elif shutil.which(exe, path=path_var) is None:
            return f"executable {exe!r} not found on PATH"
    return None


def build_invocation(ws: Workstream, config: Config, *, worktree: Path, prompt_file: Path,
                     log_dir: Path) -> Invocation:
    """The command, environment, stdin and output kind for running ``ws`` in ``worktree``.

    ``prompt_file`` and ``log_dir`` must lie outside the worktree (or the snapshot takes them).
    The prompt file is written from ``ws.prompt`` only if the caller has not written it."""
    spec = resolve_tool(ws, config)
    log_dir.mkdir(parents=True, exist_ok=True)
    if not prompt_file.exists():
        prompt_file.parent.mkdir(parents=True, exist_ok=True)
        prompt_file.write_text(ws.prompt or "")
    model = _model(ws)
    files = scope_files(ws)
    if spec.kind == "shell":
        if ws.command is None:
            raise ValueError("tool shell needs a command")
        cmd: str | list[str] = ws.command if isinstance(ws.command, str) else list(ws.command)
        return Invocation(cmd)
    if spec.kind == "config":
        assert spec.tooldef is not None
        tdef = spec.tooldef
        values = {"prompt_file": str(prompt_file), "workdir": str(worktree),
                  "log_dir": str(log_dir), "model": model or tdef.model or ""}
        return Invocation(
            expand_template(tdef.command, values, files), dict(tdef.env),
            prompt_file if tdef.stdin == "prompt" else None, tdef.output,
        )
    if spec.name == "aider":
        cmd = ["aider", "--message-file", str(prompt_file), "--yes-always", "--no-auto-commits",
               "--no-dirty-commits", "--no-gitignore", "--no-check-update", "--no-analytics",
               "--no-show-model-warnings", "--no-pretty", "--no-stream", "--no-fancy-input",
               "--no-detect-urls", "--no-suggest-shell-commands",
               "--chat-history-file", str(log_dir / "aider.chat.md"),
               "--input-history-file", str(log_dir / "aider.input")]
        if model:
            cmd += ["--model", model]
        for read in _str_list(ws.metadata.get("read")):
            cmd += ["--read", read]
        cmd += ["--", *files]
        return Invocation(cmd, {}, None, "worktree", None)
    if spec.name == "claude":
        turns = ws.metadata.get("max_turns", CLAUDE_MAX_TURNS)
        cmd = ["claude", "-p", "--output-format", "json", "--permission-mode", "acceptEdits",
               "--allowedTools", "Read", "Edit", "Write",
               *[f"Bash({c} *)" for c in ws.acceptance],
               "--disallowedTools", "Bash(git commit *)", "Bash(git push *)",
               "--max-turns", str(int(turns)), "--no-session-persistence"]
        if model:
            cmd += ["--model", model]
        env: dict[str, str] = {}
        if _has("ANTHROPIC_API_KEY", ws) and not _has("CLAUDE_CONFIG_DIR", ws):
            env["CLAUDE_CONFIG_DIR"] = str(_mkdir(log_dir / "claude-config"))
        return Invocation(cmd, env, prompt_file, "worktree", check_claude_output)
    # codex
    cmd = ["codex", "exec", "--cd", str(worktree), "--sandbox", "workspace-write", "--ephemeral",
           "--color", "never", "--json", "--output-last-message", str(log_dir / "codex-last.md")]
    if model:
        cmd += ["--model", model]
    cmd.append("-")
    env = {}
    if _has("CODEX_API_KEY", ws) and not _has("CODEX_HOME", ws):
        env["CODEX_HOME"] = str(_mkdir(log_dir / "codex-home"))
    return Invocation(cmd, env, prompt_file, "worktree", check_codex_output)


def tool_env(ws: Workstream, *, run: str, attempt: int, worktree: Path, worker: int, port: int,
             prompt_file: Path | None = None) -> dict[str, str]:
    """The variables every tool (and setup command) gets, laid over ``os.environ`` by
    ``run_process``: ``UET_RUN``, ``UET_WORKSTREAM``, ``UET_WORKTREE``, ``UET_WORKER``,
    ``UET_PORT`` (the first port of this worker's block), ``UET_ATTEMPT``, ``UET_PROMPT`` (cut at
    64 KiB: exec refuses longer strings; the file is complete), ``UET_PROMPT_FILE``, then
    ``ws.env``."""
    prompt = ws.prompt or ""
    if len(prompt.encode()) > PROMPT_ENV_LIMIT:
        prompt = prompt.encode()[:PROMPT_ENV_LIMIT].decode(errors="ignore")
    env = {
        "UET_RUN": run,
        "UET_WORKSTREAM": ws.id,
        "UET_WORKTREE": str(worktree),
        "UET_WORKER": str(worker),
        "UET_PORT": str(port),
        "UET_ATTEMPT": str(attempt),
        "UET_PROMPT": prompt,
    }
    if prompt_file is not None:
        env["UET_PROMPT_FILE"] = str(prompt_file)
    env.update(ws.env)
    return env


def worker_port(config: Config, worker: int) -> int:
    """The first port of worker ``worker``'s block (``[run] port_base + worker * port_block``)."""
    return config.run.port_base + worker * config.run.port_block


def prepare_repo_for_tools(repo: Repo) -> bool:
    """Add the AI tools' droppings (``.aider*``) to ``info/exclude`` in the common git dir, which
    every worktree shares, so they are never taken as changes and never touch a tracked
    ``.gitignore``. Idempotent (call once per run); returns True when the file changed."""
    common = repo.common_dir
    exclude = common / "info" / "exclude"
    try:
        text = exclude.read_text()
    except FileNotFoundError:
        text = ""
    present = {line.strip() for line in text.splitlines()}
    missing = [p for p in TOOL_EXCLUDES if p not in present]
    if not missing:
        return False
    exclude.parent.mkdir(parents=True, exist_ok=True)
    add = ("" if not text or text.endswith("\n") else "\n")
    if _EXCLUDE_HEADER not in present:
        add += _EXCLUDE_HEADER + "\n"
    add += "".join(p + "\n" for p in missing)
    with open(exclude, "a") as f:
        f.write(add)
    return True


# --- result checks ------------------------------------------------------------------------


def check_claude_output(stdout: bytes) -> str | None:
    """claude ``-p --output-format json`` prints one JSON object; ``is_error`` true (possible
    with exit 0) or no JSON at all is a failure."""
    obj = _last_json_object(stdout)
    if obj is None:
        return "claude printed no JSON result (did its flags change?)"
    if obj.get("is_error"):
        what = obj.get("result") or obj.get("subtype") or "is_error"
        return f"claude reported an error: {_one_line(str(what))}"
    subtype = obj.get("subtype")
    if isinstance(subtype, str) and subtype.startswith("error"):
        return f"claude stopped: {subtype}"
    return None


def check_codex_output(stdout: bytes) -> str | None:
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
            return f"codex {kind}: {_one_line(str(msg or 'no message'))}"
    if events == 0:
        return "codex printed no JSON events (did its flags change?)"
    return None


# --- helpers ------------------------------------------------------------------------------


def scope_files(ws: Workstream) -> list[str]:
    """Scope ``allow`` entries that are literal file paths (no glob, not ``dir/``)."""
    return [p for p in ws.scope.allow if not _GLOB_CHARS.search(p) and not p.endswith("/")]


def expand_template(template: str | list[str], values: Mapping[str, str],
                    files: list[str]) -> str | list[str]:
    """Substitute the known ``{placeholders}`` (others, like shell ``${VAR}``, stay)."""
    if isinstance(template, str):
        quoted = {k: shlex.quote(v) if v else "''" for k, v in values.items()}
        quoted["files"] = " ".join(shlex.quote(f) for f in files)
        return _substitute(template, quoted)
    out: list[str] = []
    for item in template:
        if item == "{files}":
            out += files
        else:
            out.append(_substitute(item, {**values, "files": " ".join(files)}))
    return out


def _substitute(text: str, values: Mapping[str, str]) -> str:
    return re.sub(r"\{(" + "|".join(_PLACEHOLDERS) + r")\}",
                  lambda m: values.get(m.group(1), m.group(0)), text)


def _template_needs_prompt(tdef: ToolDef) -> bool:
    parts = [tdef.command] if isinstance(tdef.command, str) else tdef.command
    return tdef.stdin == "prompt" or any("{prompt_file}" in p for p in parts)


def _first_word(cmd: str | list[str]) -> str | None:
    """The executable a command runs, or None when that cannot be told safely."""
    if isinstance(cmd, list):
        return str(cmd[0]) if cmd else None
    try:
        words = shlex.split(cmd, comments=True)
    except ValueError:
        return None
    for w in words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            continue  # VAR=value prefix
        if w in _SHELL_WORDS or any(c in w for c in "$`(){};|&<>*?~"):
            return None
        return w
    return None


def _model(ws: Workstream) -> str | None:
    m = ws.metadata.get("model")
    return m if isinstance(m, str) and m else None


def _str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def _has(var: str, ws: Workstream) -> bool:
    return bool(ws.env.get(var) or os.environ.get(var))


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _last_json_object(data: bytes) -> dict | None:
    text = data.decode(errors="replace").strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                    break
                except ValueError:
                    continue
    if isinstance(obj, list):  # stream-json style: take the final "result" event
        obj = next((o for o in reversed(obj) if isinstance(o, dict)), None)
    return obj if isinstance(obj, dict) else None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
