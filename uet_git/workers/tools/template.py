"""Tools defined in uet.toml (``[tools.NAME]``): a ``command`` template.

A string template is substituted with shell quoting and run by ``sh -c``; in a list, each entry
is one argv element and an entry that is exactly ``{files}`` expands to one element per file.
Placeholders: ``{prompt_file}``, ``{files}``, ``{workdir}``, ``{log_dir}``, ``{model}`` (others,
like shell ``${VAR}``, stay). ``output = worktree|diff|mbox``; ``stdin = prompt|null``. A
uet.toml tool named like a preset replaces the preset's command and keeps its result check.

Many tools exit 0 on a refusal, so a tool may declare how its success is read::

    [tools.mine]
    command = "mine --json {prompt_file} > {log_dir}/result.json"
    success = {json = "{log_dir}/result.json", field = "is_error", equals = false}
    # or: success = {json = "stdout", field = "status", equals = "ok"}
    # or: success = {regex = "(?i)permission denied", stream = "stderr", match = false}

``field`` is dotted (``result.ok``); ``match = true`` means the regex must be found.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from uet_git.spec.models import SuccessCheck, ToolDef, Workstream
from uet_git.workers.tools.base import (
    Call,
    Invocation,
    ResultCheck,
    ToolSpec,
    first_word,
    last_json_object,
    one_line,
)
from uet_git.workers.tools.base import no_result_check as check_result

__all__ = ["check_result", "executable", "expand_template", "invocation", "problem", "spec"]

PLACEHOLDERS = ("prompt_file", "files", "workdir", "log_dir", "model")


def spec(name: str, tdef: ToolDef | None) -> ToolSpec:
    assert tdef is not None
    return ToolSpec(name, "config", tdef.output, _needs_prompt(tdef), tdef)


def problem(ws: Workstream, spec: ToolSpec) -> str | None:
    return None


def executable(ws: Workstream, spec: ToolSpec) -> str | None:
    assert spec.tooldef is not None
    exe = first_word(spec.tooldef.command)
    return None if exe is not None and "{" in exe else exe  # a placeholder: cannot tell


def invocation(ws: Workstream, spec: ToolSpec, call: Call) -> Invocation:
    tdef = spec.tooldef
    assert tdef is not None
    values = {"prompt_file": str(call.prompt_file), "workdir": str(call.worktree),
              "log_dir": str(call.log_dir), "model": call.model or tdef.model or ""}
    check = None if tdef.success is None else success_check(tdef.success, values, call.log_dir)
    evidence = {}
    if tdef.success is not None and tdef.success.json_ not in (None, "stdout"):
        evidence["result.json"] = Path(_substitute(tdef.success.json_ or "", values))
    return Invocation(expand_template(tdef.command, values, call.files), dict(tdef.env),
                      call.prompt_file if tdef.stdin == "prompt" else None, tdef.output, check,
                      evidence,
                      "stdin (the prompt file)" if tdef.stdin == "prompt" else "the command line")


_MISSING = object()


def success_check(s: SuccessCheck, values: Mapping[str, str], log_dir: Path) -> ResultCheck:
    """The ``success`` declaration as a result check (stdout bytes -> failure reason)."""
    def check(stdout: bytes) -> str | None:
        if s.regex is not None:
            text = stdout if s.stream == "stdout" else _read(log_dir / "tool.stderr")
            found = re.search(s.regex, text.decode(errors="replace")) is not None
            if found == s.match:
                return None
            return (f"its {s.stream} does not match {s.regex!r}" if s.match
                    else f"its {s.stream} matches {s.regex!r}")
        source = s.json_ or "stdout"
        data = stdout if source == "stdout" else _read(Path(_substitute(source, values)))
        obj = last_json_object(data)
        if obj is None:
            return f"no JSON object in {source}"
        value: object = obj
        for key in (s.field or "").split("."):
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is _MISSING:
            return f"{source} has no field {s.field!r}"
        if value != s.equals:
            return f"{source}: {s.field} is {one_line(json.dumps(value), 80)}, " \
                   f"not {json.dumps(s.equals)}"
        return None
    return check


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


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
    return re.sub(r"\{(" + "|".join(PLACEHOLDERS) + r")\}",
                  lambda m: values.get(m.group(1), m.group(0)), text)


def _needs_prompt(tdef: ToolDef) -> bool:
    parts = [tdef.command] if isinstance(tdef.command, str) else tdef.command
    return tdef.stdin == "prompt" or any("{prompt_file}" in p for p in parts)
