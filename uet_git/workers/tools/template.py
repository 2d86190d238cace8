"""Tools defined in uet.toml (``[tools.NAME]``): a ``command`` template.

A string template is substituted with shell quoting and run by ``sh -c``; in a list, each entry
is one argv element and an entry that is exactly ``{files}`` expands to one element per file.
Placeholders: ``{prompt_file}``, ``{files}``, ``{workdir}``, ``{log_dir}``, ``{model}`` (others,
like shell ``${VAR}``, stay). ``output = worktree|diff|mbox``; ``stdin = prompt|null``. A
uet.toml tool named like a preset replaces the preset.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from uet_git.spec.models import ToolDef, Workstream
from uet_git.workers.tools.base import Call, Invocation, ToolSpec, first_word
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
    return Invocation(expand_template(tdef.command, values, call.files), dict(tdef.env),
                      call.prompt_file if tdef.stdin == "prompt" else None, tdef.output)


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
