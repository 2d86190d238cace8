"""The tool registry: every kind satisfies the Tool protocol, and a new kind is one entry."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import pytest

from uet_git.spec.models import Config, ToolDef, Workstream
from uet_git.workers import tools
from uet_git.workers.tools import base, registry, template
from uet_git.workers.tools.base import Invocation, Tool, ToolSpec


def _protocol_members() -> list[str]:
    return [n for n, v in vars(Tool).items() if inspect.isfunction(v) and not n.startswith("_")]


@pytest.mark.parametrize("name", [*registry.TOOLS, "template"])
def test_each_kind_provides_the_protocol(name: str) -> None:
    mod = registry.TOOLS.get(name, template)
    for member in _protocol_members():
        fn = getattr(mod, member)
        assert callable(fn), (name, member)
        want = [p for p in inspect.signature(getattr(Tool, member)).parameters if p != "self"]
        assert list(inspect.signature(fn).parameters) == want, (name, member)


def test_presets_are_the_registry_minus_shell() -> None:
    assert tools.PRESETS == ("aider", "claude", "codex", "gemini", "opencode")
    assert tools.BUILTIN[1:] == tools.PRESETS and tools.BUILTIN[0] == "shell"


def test_a_new_kind_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    echo = types.SimpleNamespace(
        spec=lambda name, tdef: ToolSpec(name, "preset", needs_prompt=True),
        problem=lambda ws, spec: None,
        executable=lambda ws, spec: "sh",
        invocation=lambda ws, spec, call: Invocation(["sh", "-c", "cat"], {}, call.prompt_file),
        check_result=base.no_result_check,
    )
    monkeypatch.setitem(registry.TOOLS, "echoer", echo)
    ws = Workstream(id="a", tool="echoer", prompt="hi")
    assert tools.check_tool(ws, Config()) is None
    assert tools.resolve_tool(ws, Config()).kind == "preset"
    inv = tools.build_invocation(ws, Config(), worktree=tmp_path, prompt_file=tmp_path / "p",
                                 log_dir=tmp_path / "log")
    assert inv.stdin_path == tmp_path / "p" and (tmp_path / "p").read_text() == "hi"
    assert tools.check_tool(Workstream(id="b", tool="echoer"), Config()) == \
        "tool echoer needs a prompt"


def test_uet_toml_tool_wins_over_a_preset() -> None:
    cfg = Config(tools={"claude": ToolDef(command="true")})
    assert tools.resolve_tool(Workstream(id="a", tool="claude"), cfg).kind == "config"
    with pytest.raises(ValueError, match="unknown tool 'nope'"):
        tools.resolve_tool(Workstream(id="a", tool="nope"), cfg)
