"""What every tool kind provides (``Tool``), the values passed around, and shared helpers.

A tool kind is a module of this package whose module-level names satisfy ``Tool`` (as
pre-commit's languages satisfy ``lang_base.Language``): ``shell``, ``template`` (tools defined
in ``uet.toml``), ``aider``, ``claude``, ``codex``. ``registry`` lists them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from uet_git.spec.models import PresetConfig, ToolDef, Workstream

ResultCheck = Callable[[bytes], str | None]

GLOB_CHARS = re.compile(r"[*?\[\]]")
# Shell builtins and keywords: a command starting with one is not checked on PATH.
_SHELL_WORDS_TEXT = """
    ! { } ( ) [ [[ . : alias bg break builtin cd command continue declare echo eval exec exit
    export false fg for function getopts hash if jobs kill let local printf pwd read readonly
    return set shift source test times trap true type typeset ulimit umask unalias unset until
    wait while case select time
"""
_SHELL_WORDS = frozenset(_SHELL_WORDS_TEXT.split())


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
    # files the tool writes outside the worktree that are kept as the attempt's evidence
    # (transcripts, JSON results), by evidence name; a missing file is skipped
    evidence: dict[str, Path] = field(default_factory=dict)
    # how the prompt reaches the tool, for ``uet run --dry-run``
    prompt_via: str = ""


@dataclass(frozen=True)
class Call:
    """Where one invocation runs: the worktree (cwd), the prompt file and the log dir (both
    outside the worktree), the model (``metadata.model``, else the ``[presets.NAME]`` one), the
    scope's literal files, the files its globs match at the base (``glob_files``), and the
    ``[presets.NAME]`` settings."""

    worktree: Path
    prompt_file: Path
    log_dir: Path
    model: str | None
    files: list[str]
    glob_files: list[str] = field(default_factory=list)
    preset: PresetConfig = field(default_factory=PresetConfig)


def preset_spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    """An agent preset's spec: it needs a prompt, and uet.toml cannot redefine it."""
    return ToolSpec(name, "preset", needs_prompt=True)


def no_problem(ws: Workstream, spec: ToolSpec) -> str | None:
    """A preset reads no workstream field it could find wrong (its prompt is checked for all)."""
    return None


def named_executable(ws: Workstream, spec: ToolSpec) -> str | None:
    """The preset's program is the tool's own name (``claude``, ``codex``, ...)."""
    return spec.name


class Tool(Protocol):
    """A tool kind: how its spec is resolved, how it is checked before a run, how it becomes a
    command line, and how its result is read (exit 0 proves nothing for AI tools)."""

    def spec(self, name: str, tdef: ToolDef | None) -> ToolSpec:
        """The ToolSpec for a workstream naming ``name`` (``tdef`` for uet.toml tools)."""
        ...

    def problem(self, ws: Workstream, spec: ToolSpec) -> str | None:
        """A one-line problem of the workstream's own fields (e.g. no command), or None."""
        ...

    def executable(self, ws: Workstream, spec: ToolSpec) -> str | None:
        """The program to find on PATH before running, or None when it cannot be told."""
        ...

    def invocation(self, ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
        """The command, environment and stdin for running ``ws`` as described by ``call``."""
        ...

    def check_result(self, stdout: bytes) -> str | None:
        """A failure reason read from the tool's stdout even when it exited 0, or None."""
        ...


def scope_files(ws: Workstream) -> list[str]:
    """Scope ``allow`` entries that are literal file paths (no glob, not ``dir/``)."""
    return [p for p in ws.scope.allow if not GLOB_CHARS.search(p) and not p.endswith("/")]


def first_word(cmd: str | list[str]) -> str | None:
    """The executable a command runs, or None when that cannot be told safely."""
    if isinstance(cmd, list):
        return str(cmd[0]) if cmd else None
    try:
        words = shlex.split(cmd, comments=True)
    except ValueError:
        return None
    for w in words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            if any(c in w for c in "$`("):
                return None  # VAR=$(cmd ...): shlex splits the substitution; cannot tell
            continue  # VAR=value prefix
        if w in _SHELL_WORDS or any(c in w for c in "$`(){};|&<>*?~"):
            return None
        return w
    return None


def model_of(ws: Workstream) -> str | None:
    m = ws.metadata.get("model")
    return m if isinstance(m, str) and m else None


def str_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


def has_var(var: str, ws: Workstream) -> bool:
    """The variable is set (non-empty) for the tool: in the workstream's env or uet's own."""
    return bool(ws.env.get(var) or os.environ.get(var))


def mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def no_result_check(stdout: bytes) -> str | None:
    """For tools with no structured output: the diff and the acceptance commands decide."""
    return None


def last_json_object(data: bytes) -> dict | None:
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


def output_problem(text: str, markers: tuple[str, ...], tool: str) -> str | None:
    """The first output line holding one of ``markers`` (a tool that exits 0 on failure)."""
    for line in text.splitlines():
        if any(m in line for m in markers):
            return f"{tool} reported an error: {one_line(line)}"
    return None


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def result_summary(data: bytes) -> str | None:
    """``cost $0.0123, 3 turns, session S`` from a ``result.json`` evidence (claude's JSON
    result: ``total_cost_usd``, ``num_turns``, ``session_id``), or None when it holds none."""
    obj = last_json_object(data)
    if obj is None:
        return None
    parts = []
    cost = obj.get("total_cost_usd", obj.get("cost_usd"))
    if isinstance(cost, int | float):
        parts.append(f"cost ${cost:.4f}")
    turns = obj.get("num_turns")
    if isinstance(turns, int):
        parts.append(f"{turns} turn{'s' if turns != 1 else ''}")
    session = obj.get("session_id")
    if isinstance(session, str) and session:
        parts.append(f"session {session}")
    return ", ".join(parts) or None
