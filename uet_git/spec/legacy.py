"""The legacy pipeline's workstream bundles, read directly and mapped to ``Workstream``.

A bundle (see ../shared/corpus/legacy-workstreams) is a JSON object with ``id``, ``tasks``,
``files_scope``, ``files_create``, ``acceptance_tests``, ``depends_on``, ``tool``,
``circuit_breaker``, ``capability_payload`` and bookkeeping fields. The mapping:

- ``id`` -> ``id`` (must be a valid uet id, else refused); ``title`` -> ``title``.
- ``tasks`` -> ``prompt``, as a numbered list under "Tasks:". No tasks -> refused (nothing for
  the tool to do).
- ``files_scope`` + ``files_create`` -> ``scope.allow``, deduplicated, directories (``dir/``)
  and globs kept as such. An entry with no extension and no trailing ``/`` (``src/utils``) may be
  a file or a directory: it is kept as both (``src/utils`` and ``src/utils/``) with a warning.
  An entry uet refuses (absolute, ``..``, ``.git``) refuses the bundle. No entries at all -> an
  empty allow list (every path), with a warning.
- ``acceptance_tests`` -> ``acceptance`` when the line is a shell command (``is_command``),
  otherwise into the prompt under "Acceptance criteria" with a warning per line.
- ``depends_on`` -> ``depends_on``, duplicates removed with a warning; an entry that is not a
  valid id refuses the bundle (a dependency is never dropped).
- ``tool`` -> ``tool`` ("aider" and "codex" are the same-named presets). No tool -> ``aider``,
  the legacy pipeline's own default, with a warning. Another name is kept (it must then be
  defined in ``[tools.NAME]``) with a warning.
- ``circuit_breaker.max_attempts`` (total attempts) -> ``retries = max_attempts - 1``;
  otherwise ``capability_payload.max_retries`` -> ``retries``.
  ``capability_payload.timeout_ms`` -> ``timeout`` (seconds).
- Every other field (``doc_id``, ``gate``, ``ccpm_issue``, ``openspec_change``, ``metadata``,
  ``circuit_breaker``, ``capability_payload``, ...) is kept verbatim under ``metadata`` by its own
  name, plus ``legacy_source`` (the file name).

Refused, one line each: unrendered templates (the ``ws-abs-*`` files: ``{...}`` placeholders),
planning documents of another shape (the ``ws-next-*`` files: ``objective``, ``dependencies``
object, ``acceptance_criteria`` objects, and no ``files_scope``/``tasks``/``tool``; they describe
work for people, with prose steps and statuses, so there is nothing a tool could run unattended),
and JSON Schema documents.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from uet_git.spec.models import BUILTIN_TOOLS, ID_MAX, Workstream, check_id
from uet_git.spec.scope import validate_pattern

# Fields only legacy bundles (or the pipeline's planning documents) have; none is native.
LEGACY_MARKERS = frozenset({
    "files_scope", "files_create", "tasks", "acceptance_tests", "openspec_change", "ccpm_issue",
    "gate", "circuit_breaker", "capability_payload", "capability", "doc_id", "parallel_ok",
    "conflict_group", "kind", "priority", "estimated_context_tokens", "max_cost_usd",
    "compensation_actions", "test_gates", "files_modify",
})
PLANNING_MARKERS = frozenset({
    "objective", "execution_steps", "acceptance_criteria", "dependencies", "workstream_type",
    "deliverables", "success_metrics", "effort_estimate", "execution_phases", "weekly_plan",
})
MAPPED = frozenset({
    "id", "title", "tasks", "files_scope", "files_create", "acceptance_tests", "depends_on", "tool",
})
DEFAULT_TOOL = "aider"

# First words of lines that are commands (checked case-sensitively, as a shell would).
KNOWN_COMMANDS = frozenset({
    "pytest", "python", "python3", "py", "pip", "pip3", "uv", "tox", "nox", "make", "bash", "sh",
    "zsh", "pwsh", "powershell", "grep", "egrep", "rg", "ls", "cat", "test", "[", "diff", "cmp",
    "find", "git", "go", "cargo", "npm", "npx", "node", "yarn", "pnpm", "deno", "ruff", "mypy",
    "pyright", "black", "isort", "flake8", "pylint", "bandit", "markdownlint", "yamllint",
    "shellcheck", "jq", "eslint", "tsc", "prettier", "echo", "true", "false", "wc", "head",
    "tail", "sed", "awk", "curl", "docker", "gh", "env", "cd", "coverage", "hatch", "poetry",
    "pre-commit", "mvn", "gradle", "dotnet", "java", "ctest", "cmake", "perl", "ruby", "php",
})
_SCRIPT = re.compile(r"^\.{0,2}/|\.(sh|py|ps1|bash)$")
_SHELLISH = re.compile(r"(^|\s)--?[A-Za-z]|\||&&|;|>|\$\(")


@dataclass
class LegacyOutcome:
    """The result of mapping one bundle: a workstream, or the one-line reason it is refused.
    ``warnings`` are lossy or guessed mappings the user should look at; ``notes`` say what was
    mapped where. ``ws_id`` is the bundle's id when it is a valid one (for messages)."""

    workstream: Workstream | None
    warnings: list[str] = field(default_factory=list)
    refused: str | None = None
    notes: list[str] = field(default_factory=list)
    ws_id: str | None = None


def is_legacy(obj: object) -> bool:
    """Whether ``obj`` is a legacy bundle or planning document (it has a field that only those
    have; a native workstream has none of them)."""
    return isinstance(obj, dict) and any(k in obj for k in LEGACY_MARKERS | PLANNING_MARKERS)


def not_a_workstream(obj: dict[str, Any]) -> str | None:
    """Why ``obj`` is no workstream at all (a JSON Schema document), or None."""
    if "$schema" in obj or ("$id" in obj and "properties" in obj):
        return "a JSON Schema document, not a workstream"
    return None


# Unquoted placeholder values: ``: {['a', 'b']}`` or ``: {3}`` (never valid JSON).
_TEMPLATE = re.compile(r""":\s*\{\s*\[|:\s*\{\s*[^"{}\[\]\s:][^"{}\[\]\n:]*\}""")


def looks_like_template(text: str) -> bool:
    """Whether JSON text that failed to parse has template placeholders (``{...}`` values,
    ``{['a', 'b']}`` lists), like the unrendered ``ws-abs-*`` bundles."""
    return bool(_TEMPLATE.search(text))


def is_command(line: str) -> bool:
    """Whether an acceptance line is a shell command rather than prose. A known command
    (``pytest``, ``python``, ``grep``...), a script path (``./x``, ``*.sh``/``.py``), or a
    lower-case word followed by flags or shell operators; prose starts with a capital or
    reads as a sentence."""
    s = line.strip()
    if not s:
        return False
    try:
        words = shlex.split(s)
    except ValueError:
        words = s.split()
    if not words:
        return False
    first = words[0]
    if first in KNOWN_COMMANDS:
        return True
    if _SCRIPT.search(first):
        # "scripts/x.py does y" is prose unless the rest looks like arguments
        return len(words) == 1 or bool(_SHELLISH.search(s)) or first.startswith(("./", "/"))
    return bool(re.fullmatch(r"[a-z][a-z0-9_.+-]*", first)) and bool(_SHELLISH.search(s))


def _short(s: str, n: int = 80) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "..."


def _str_list(obj: dict[str, Any], key: str) -> tuple[list[str], str | None]:
    """``obj[key]`` as a list of strings (a lone string counts as one), or the problem."""
    v = obj.get(key)
    if v is None:
        return [], None
    if isinstance(v, str):
        return [v], None
    if not isinstance(v, list):
        return [], f"{key}: must be a list of strings, got {type(v).__name__}"
    for i, item in enumerate(v):
        if not isinstance(item, str):
            return [], f"{key}[{i}]: must be a string, got {type(item).__name__}"
    return list(v), None


def _refuse(reason: str, ws_id: str | None = None) -> LegacyOutcome:
    return LegacyOutcome(None, refused=reason, ws_id=ws_id)


def from_legacy(obj: object, path: str | Path) -> LegacyOutcome:
    """Map one legacy bundle to a ``Workstream`` (``source`` = ``path``) or refuse it."""
    if not isinstance(obj, dict):
        return _refuse(f"expected a bundle (a JSON object), got {type(obj).__name__}")
    raw_id = obj.get("id")
    if isinstance(raw_id, str) and len(raw_id) > 2 and raw_id[0] == "{" and raw_id[-1] == "}":
        return _refuse(f"unrendered template: id {_short(raw_id)!r} holds a placeholder")
    if (
        not any(k in obj for k in ("files_scope", "tasks", "tool"))
        and any(k in obj for k in PLANNING_MARKERS)
    ):
        shape = ", ".join(k for k in sorted(PLANNING_MARKERS) if k in obj)
        return _refuse(
            f"planning document ({shape}), not a workstream bundle: no files_scope, tasks or "
            "tool, and its steps are prose for people; write a native workstream by hand",
            _valid(raw_id),
        )
    if raw_id is None:
        return _refuse("id: required field is missing")
    try:
        ws_id = check_id(raw_id)
    except ValueError as exc:
        return _refuse(f"id: {exc}")

    warnings: list[str] = []
    notes: list[str] = []

    tasks, problem = _str_list(obj, "tasks")
    if problem:
        return _refuse(problem, ws_id)
    tasks = [t for t in tasks if t.strip()]
    if not tasks:
        return _refuse("tasks: no tasks, so nothing for a tool to do", ws_id)

    # scope
    allow: list[str] = []
    ambiguous: list[str] = []
    for key in ("files_scope", "files_create"):
        entries, problem = _str_list(obj, key)
        if problem:
            return _refuse(problem, ws_id)
        for i, raw in enumerate(entries):
            entry = raw.strip()
            bad = validate_pattern(entry)
            if bad is not None:
                return _refuse(f"{key}[{i}]: {bad}", ws_id)
            allow.append(entry)
            last = entry.rsplit("/", 1)[-1]
            if not entry.endswith("/") and "." not in last and not re.search(r"[*?\[]", last):
                ambiguous.append(entry)
                allow.append(entry + "/")
    allow = list(dict.fromkeys(allow))
    ambiguous = list(dict.fromkeys(ambiguous))
    if ambiguous:
        shown = ", ".join(repr(a) for a in ambiguous)
        warnings.append(
            f"files_scope: {shown} may be a file or a directory: kept as both (add a trailing "
            "'/' for a directory)"
        )
    if not allow:
        warnings.append("files_scope: empty, so scope.allow is empty and every path is allowed")

    # acceptance
    tests, problem = _str_list(obj, "acceptance_tests")
    if problem:
        return _refuse(problem, ws_id)
    acceptance: list[str] = []
    criteria: list[str] = []
    for i, line in enumerate(tests):
        if not line.strip():
            continue
        if is_command(line):
            acceptance.append(line.strip())
        else:
            criteria.append(line.strip())
            warnings.append(
                f"acceptance_tests[{i}] is not a command; added to the prompt as an acceptance "
                f"criterion: {_short(line)!r}"
            )

    # dependencies
    deps, problem = _str_list(obj, "depends_on")
    if problem:
        return _refuse(problem, ws_id)
    for i, dep in enumerate(deps):
        try:
            check_id(dep)
        except ValueError as exc:
            return _refuse(f"depends_on[{i}]: {exc} (a dependency is never dropped)", ws_id)
    unique = list(dict.fromkeys(deps))
    if len(unique) != len(deps):
        dups = [d for d in unique if deps.count(d) > 1]
        warnings.append(f"depends_on: duplicates removed: {', '.join(dups)}")

    # tool
    tool = obj.get("tool")
    if tool is None:
        tool = DEFAULT_TOOL
        warnings.append(f"tool: absent; using {DEFAULT_TOOL!r}, the legacy pipeline's default")
    elif not isinstance(tool, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", tool):
        return _refuse(f"tool: {_short(repr(tool))} is not a tool name", ws_id)
    elif tool not in BUILTIN_TOOLS:
        warnings.append(
            f"tool: {tool!r} is not a built-in tool; define [tools.{tool}] in uet.toml"
        )

    data: dict[str, Any] = {
        "id": ws_id,
        "depends_on": unique,
        "tool": tool,
        "prompt": _prompt(obj, tasks, criteria),
        "scope": {"allow": allow},
        "acceptance": acceptance,
    }
    title = obj.get("title")
    if isinstance(title, str):
        data["title"] = " ".join(title.split())

    # retries and timeout
    cb = obj.get("circuit_breaker")
    payload = obj.get("capability_payload")
    attempts = cb.get("max_attempts") if isinstance(cb, dict) else None
    max_retries = payload.get("max_retries") if isinstance(payload, dict) else None
    if attempts is not None:
        if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1:
            data["retries"] = min(attempts - 1, 20)
            notes.append(f"circuit_breaker.max_attempts={attempts} -> retries={data['retries']}")
            if attempts - 1 > 20:
                warnings.append(f"circuit_breaker.max_attempts={attempts}: retries capped at 20")
        else:
            warnings.append(
                f"circuit_breaker.max_attempts={_short(repr(attempts))} is not a positive "
                "integer; retries left at 0 (value kept under metadata)"
            )
    elif max_retries is not None:
        if isinstance(max_retries, int) and not isinstance(max_retries, bool) and max_retries >= 0:
            data["retries"] = min(max_retries, 20)
            notes.append(f"capability_payload.max_retries={max_retries} -> retries")
        else:
            warnings.append("capability_payload.max_retries is not a non-negative integer; ignored "
                            "(value kept under metadata)")
    timeout_ms = payload.get("timeout_ms") if isinstance(payload, dict) else None
    if timeout_ms is not None:
        number = isinstance(timeout_ms, int | float) and not isinstance(timeout_ms, bool)
        if number and timeout_ms > 0:
            data["timeout"] = timeout_ms / 1000
            notes.append(f"capability_payload.timeout_ms={timeout_ms} -> timeout")
        else:
            warnings.append("capability_payload.timeout_ms is not a positive number; default "
                            "timeout used (value kept under metadata)")

    native = sorted(
        k for k in obj if k in Workstream.model_fields and k not in MAPPED and k != "metadata"
    )
    if native:
        warnings.append(
            f"{', '.join(native)}: native field(s) in a legacy bundle are not mapped; kept "
            "under metadata (convert the bundle and edit the YAML instead)"
        )
    metadata = {k: v for k, v in obj.items() if k not in MAPPED}
    metadata["legacy_source"] = Path(path).name
    data["metadata"] = metadata
    kept = sorted(k for k in obj if k not in MAPPED)
    notes.append(
        f"tasks -> prompt ({len(tasks)}); files_scope+files_create -> scope.allow "
        f"({len(allow)}); acceptance_tests -> acceptance ({len(acceptance)})"
    )
    if kept:
        notes.append(f"kept under metadata: {', '.join(kept)}")

    try:
        ws = Workstream.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        return _refuse(f"{loc}: {msg}" if loc else msg, ws_id)
    ws._source = str(path)
    return LegacyOutcome(ws, warnings=warnings, notes=notes, ws_id=ws_id)


def _valid(raw_id: object) -> str | None:
    if not isinstance(raw_id, str) or len(raw_id) > ID_MAX:
        return None
    try:
        return check_id(raw_id)
    except ValueError:
        return None


def _prompt(obj: dict[str, Any], tasks: list[str], criteria: list[str]) -> str:
    parts: list[str] = []
    title = obj.get("title")
    if isinstance(title, str) and title.strip():
        parts.append(" ".join(title.split()))
    payload = obj.get("capability_payload")
    if isinstance(payload, dict) and isinstance(payload.get("prompt"), str):
        parts.append(payload["prompt"].strip())
    parts.append("Tasks:\n" + "\n".join(f"{i}. {t.strip()}" for i, t in enumerate(tasks, 1)))
    if criteria:
        parts.append(
            "Acceptance criteria (make these true; they are not checked automatically):\n"
            + "\n".join(f"- {c}" for c in criteria)
        )
    return "\n\n".join(parts) + "\n"
