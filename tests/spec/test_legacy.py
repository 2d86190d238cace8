"""The legacy bundle mapping, field by field, and its refusals."""

from __future__ import annotations

from typing import Any

import pytest

from uet_git.spec.legacy import from_legacy, is_command, is_legacy, looks_like_template


def bundle(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "ws-x",
        "openspec_change": "OS-1",
        "ccpm_issue": 7,
        "gate": 1,
        "files_scope": ["src/x.py"],
        "tasks": ["First", "Second"],
        "tool": "aider",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_is_legacy() -> None:
    assert is_legacy(bundle())
    assert is_legacy({"id": "a", "doc_id": "D"})
    assert is_legacy({"id": "a", "objective": "x"})  # planning document
    assert not is_legacy({"id": "a", "prompt": "x", "scope": {"allow": ["a"]}})
    assert not is_legacy(["files_scope"])


def test_full_mapping() -> None:
    out = from_legacy(bundle(
        files_scope=["src/core/", "scripts/aim_*.py", "src/a.py", "src/a.py"],
        files_create=["src/new.py", "src/core/"],
        acceptance_tests=["pytest -q tests/", "All endpoints respond"],
        depends_on=["ws-a", "ws-b", "ws-a"],
        circuit_breaker={"max_attempts": 3, "max_error_repeats": 2},
        capability_payload={"timeout_ms": 90000},
        metadata={"owner": "me"},
        doc_id="DOC-1",
    ), "dir/ws-x.json")
    ws = out.workstream
    assert out.refused is None and ws is not None
    assert ws.id == "ws-x" and ws.tool == "aider" and ws.source == "dir/ws-x.json"
    assert ws.prompt == (
        "Tasks:\n1. First\n2. Second\n\n"
        "Acceptance criteria (make these true; they are not checked automatically):\n"
        "- All endpoints respond\n"
    )
    assert ws.scope.allow == ["src/core/", "scripts/aim_*.py", "src/a.py", "src/new.py"]
    assert ws.acceptance == ["pytest -q tests/"]
    assert ws.depends_on == ["ws-a", "ws-b"]
    assert ws.retries == 2  # 3 attempts = 1 + 2 retries
    assert ws.timeout == 90
    assert ws.metadata == {
        "openspec_change": "OS-1", "ccpm_issue": 7, "gate": 1,
        "circuit_breaker": {"max_attempts": 3, "max_error_repeats": 2},
        "capability_payload": {"timeout_ms": 90000},
        "metadata": {"owner": "me"}, "doc_id": "DOC-1", "legacy_source": "ws-x.json",
    }
    assert out.warnings == [
        "acceptance_tests[1] is not a command; added to the prompt as an acceptance criterion: "
        "'All endpoints respond'",
        "depends_on: duplicates removed: ws-a",
    ]
    assert any("kept under metadata" in n for n in out.notes)


def test_ambiguous_scope_entry_kept_as_file_and_directory() -> None:
    out = from_legacy(bundle(files_scope=["src/utils", "docs/adr", "Makefile.am"]), "f.json")
    assert out.workstream is not None
    assert out.workstream.scope.allow == [
        "src/utils", "src/utils/", "docs/adr", "docs/adr/", "Makefile.am"
    ]
    assert out.warnings == [
        "files_scope: 'src/utils', 'docs/adr' may be a file or a directory: kept as both (add a "
        "trailing '/' for a directory)"
    ]


def test_missing_tool_defaults_to_aider_with_warning() -> None:
    out = from_legacy(bundle(tool=None), "f.json")
    assert out.workstream is not None and out.workstream.tool == "aider"
    assert out.warnings == ["tool: absent; using 'aider', the legacy pipeline's default"]


def test_codex_and_custom_tools() -> None:
    out = from_legacy(bundle(tool="codex"), "f.json")
    assert out.workstream is not None and out.workstream.tool == "codex" and not out.warnings
    out = from_legacy(bundle(tool="mytool"), "f.json")
    assert out.workstream is not None and out.workstream.tool == "mytool"
    assert out.warnings == [
        "tool: 'mytool' is not a built-in tool; define [tools.mytool] in uet.toml"
    ]


def test_no_scope_is_warned() -> None:
    out = from_legacy(bundle(files_scope=[]), "f.json")
    assert out.workstream is not None and out.workstream.scope.allow == []
    assert out.warnings == ["files_scope: empty, so scope.allow is empty and every path is allowed"]


def test_retry_sources() -> None:
    out = from_legacy(bundle(capability_payload={"max_retries": 4}), "f.json")
    assert out.workstream is not None and out.workstream.retries == 4
    out = from_legacy(bundle(circuit_breaker={"max_attempts": 99}), "f.json")
    assert out.workstream is not None and out.workstream.retries == 20
    assert "retries capped at 20" in out.warnings[0]
    out = from_legacy(bundle(circuit_breaker={"max_attempts": "3"}), "f.json")
    assert out.workstream is not None and out.workstream.retries == 0
    assert "not a positive integer" in out.warnings[0]


def test_title_and_payload_prompt_go_into_prompt() -> None:
    out = from_legacy(bundle(title="Do  X", capability_payload={"prompt": "Context here."}), "f")
    assert out.workstream is not None
    assert out.workstream.title == "Do X"
    assert out.workstream.prompt is not None
    assert out.workstream.prompt.startswith("Do X\n\nContext here.\n\nTasks:\n1. First")


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"id": None}, "id: required field is missing"),
        ({"id": "WS_Upper"}, "id: 'WS_Upper' must match"),
        ({"id": "{ws-abs-001}"}, "unrendered template: id '{ws-abs-001}' holds a placeholder"),
        ({"id": "ws.lock"}, "id: 'ws.lock' must not end"),
        ({"tasks": []}, "tasks: no tasks"),
        ({"tasks": None}, "tasks: no tasks"),
        ({"tasks": ["ok", 3]}, "tasks[1]: must be a string, got int"),
        ({"tasks": {"a": 1}}, "tasks: must be a list of strings, got dict"),
        ({"files_scope": ["/abs/path"]}, "files_scope[0]: '/abs/path': absolute path"),
        ({"files_create": ["../outside.py"]}, "files_create[0]: '../outside.py': '..' component"),
        ({"files_scope": [".git/hooks/pre-commit"]}, "reaches into .git/"),
        ({"depends_on": ["ok", "Bad Dep"]}, "depends_on[1]: 'Bad Dep' must match"),
        ({"tool": "{codex}"}, "tool: '{codex}' is not a tool name"),
        ({"tool": 3}, "tool: 3 is not a tool name"),
        ({"objective": "x", "files_scope": None, "tasks": None, "tool": None,
          "dependencies": {"depends_on": []}}, "planning document (dependencies, objective)"),
    ],
)
def test_refusals_are_one_line(over: dict[str, Any], reason: str) -> None:
    out = from_legacy(bundle(**over), "f.json")
    assert out.workstream is None
    assert out.refused is not None and reason in out.refused, out.refused
    assert "\n" not in out.refused


def test_native_fields_in_a_legacy_bundle_are_warned() -> None:
    out = from_legacy(bundle(prompt="p", timeout=5), "f.json")
    assert out.workstream is not None
    assert out.workstream.timeout == 900 and out.workstream.metadata["prompt"] == "p"
    assert out.warnings == [
        "prompt, timeout: native field(s) in a legacy bundle are not mapped; kept under metadata "
        "(convert the bundle and edit the YAML instead)"
    ]


def test_not_a_dict() -> None:
    out = from_legacy(["x"], "f.json")
    assert out.refused == "expected a bundle (a JSON object), got list"


@pytest.mark.parametrize(
    "line",
    ["pytest -q", "python -m pytest tests/ -v", "grep -r 'X' . | wc -l", "ls gui/",
     "markdownlint docs/", "./run.sh", "scripts/check.sh", "mytool --flag", "make test",
     "pwsh scripts/test.ps1", "rg -n 'x' -S | wc -l", "test -f a.py && pytest"],
)
def test_is_command(line: str) -> None:
    assert is_command(line)


@pytest.mark.parametrize(
    "line",
    ["All directories exist and contain .gitkeep files", "Verify the docs are complete",
     "router.config.yaml validates against YAML syntax", "diff_hash is consistent across runs",
     "scripts/submit_task.py successfully submits task to queue", "Test workflow locally",
     "", "   "],
)
def test_is_prose(line: str) -> None:
    assert not is_command(line)


def test_looks_like_template() -> None:
    assert looks_like_template('{"id": "x", "deps": {[\'a\']}}')
    assert looks_like_template('{"days": {3}}')
    assert not looks_like_template('{"a": {}, "b": { }, "c": {"d": 1}}')
    assert not looks_like_template('{"a": "{not a placeholder}" ,}')
