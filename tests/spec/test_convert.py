"""The converter: outcomes per item, unresolved dependencies, YAML that loads back identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from uet_git.errors import UetError
from uet_git.spec.convert import convert_paths, report, to_yaml, unresolved, write_outputs
from uet_git.spec.load import load_workstreams
from uet_git.spec.models import Workstream


def bundle(ws_id: str, **over: Any) -> dict[str, Any]:
    return {"id": ws_id, "gate": 1, "files_scope": [f"src/{ws_id}.py"], "tasks": ["Do it"],
            "tool": "aider", **over}


def test_outcomes_and_unresolved_dependencies(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.json").write_text(json.dumps(bundle("ws-a")))
    (src / "b.json").write_text(json.dumps(bundle("ws-b", depends_on=["ws-a", "ws-a"])))
    (src / "c.json").write_text(json.dumps(bundle("ws-c", tasks=[])))  # refused
    (src / "d.json").write_text(json.dumps(bundle("ws-d", depends_on=["ws-c", "ws-zz"])))
    (src / "e.json").write_text('{"id": "ws-e", "depends_on": {[\'ws-a\']}}')  # template
    (src / "f.json").write_text(json.dumps(bundle("ws-f", depends_on=["e"])))
    (src / "g.yaml").write_text("id: native-one\ntool: shell\ncommand: 'true'\n")
    (src / "h.json").write_text(json.dumps(bundle("ws-a")))  # duplicate id
    outcomes = convert_paths([src])
    status = {(Path(o.path).name, o.ws_id): o.status for o in outcomes}
    assert status == {
        ("a.json", "ws-a"): "converted",
        ("b.json", "ws-b"): "warned",
        ("c.json", "ws-c"): "refused",
        ("d.json", "ws-d"): "converted",
        ("e.json", "e"): "refused",
        ("f.json", "ws-f"): "converted",
        ("g.yaml", "native-one"): "converted",
        ("h.json", "ws-a"): "refused",
    }
    by_name = {Path(o.path).name: o for o in outcomes}
    assert by_name["h.json"].refused == f"duplicate id 'ws-a', also in {src / 'a.json'}"
    assert "unrendered template" in (by_name["e.json"].refused or "")
    problems = [str(p) for p in unresolved(outcomes)]
    assert problems[:2] == [
        f"ws-d ({src / 'd.json'}) depends on 'ws-c', which was refused ({src / 'c.json'}: tasks: "
        "no tasks, so nothing for a tool to do)",
        f"ws-d ({src / 'd.json'}) depends on 'ws-zz', which is in none of the inputs",
    ]
    assert problems[2].startswith(
        f"ws-f ({src / 'f.json'}) depends on 'e', which was refused ({src / 'e.json'}: line 1 "
        "column 31: unrendered template"
    )
    assert len(problems) == 3
    # the dependency is kept, never dropped
    d = by_name["d.json"].workstream
    assert d is not None and d.depends_on == ["ws-c", "ws-zz"]
    lines = report(outcomes, unresolved(outcomes))
    assert lines[-1] == (
        "5 converted (4 clean, 1 with warnings), 3 refused, 3 unresolved dependencies"
    )


def test_written_yaml_loads_back_to_the_same_workstreams(tmp_path: Path) -> None:
    src = tmp_path / "in.json"
    src.write_text(json.dumps([
        bundle("ws-a", acceptance_tests=["pytest -q", "Prose line: with colon"],
               metadata={"owner": "x", "n": 1, "nested": {"deep": [1, "two"]}}, doc_id="D",
               circuit_breaker={"max_attempts": 2}, capability_payload={"timeout_ms": 1500}),
        bundle("ws-b", depends_on=["ws-a"], title="Multi\nline: title"),
    ]))
    outcomes = convert_paths([src])
    out = tmp_path / "out"
    write_outputs(outcomes, out)
    assert sorted(p.name for p in out.iterdir()) == ["ws-a.yaml", "ws-b.yaml"]
    text = (out / "ws-a.yaml").read_text()
    assert text.startswith(f"# converted by uet convert from {src} [0] (legacy bundle)\n"
                           "# warning: acceptance_tests[1] is not a command")
    assert "prompt: |\n" in text  # multi-line prompt as a block
    loaded = load_workstreams([out])
    assert loaded.errors == [] and loaded.warnings == []
    originals = {o.workstream.id: o.workstream for o in outcomes if o.workstream}
    for ws in loaded.workstreams:
        assert ws.model_dump() == originals[ws.id].model_dump()
    # and the output is plain YAML any tool can read
    assert yaml.safe_load(text)["retries"] == 1


def test_write_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_text(json.dumps(bundle("ws-a")))
    out = tmp_path / "out"
    out.mkdir()
    (out / "ws-a.yaml").write_text("keep me\n")
    outcomes = convert_paths([src])
    with pytest.raises(UetError, match=r"ws-a\.yaml: already exists; use --force"):
        write_outputs(outcomes, out)
    assert (out / "ws-a.yaml").read_text() == "keep me\n"
    write_outputs(outcomes, out, force=True)
    assert (out / "ws-a.yaml").read_text().startswith("# converted by uet convert")


def test_output_must_be_a_directory(tmp_path: Path) -> None:
    src = tmp_path / "a.json"
    src.write_text(json.dumps(bundle("ws-a")))
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(UetError, match="exists and is not a directory"):
        write_outputs(convert_paths([src]), target)


def test_to_yaml_keeps_field_order_and_omits_defaults() -> None:
    ws = Workstream(id="a", tool="shell", command=["echo", "hi"], depends_on=["b"])
    text = to_yaml(ws, ["header"])
    assert text == "# header\nid: a\ndepends_on:\n- b\ntool: shell\ncommand:\n- echo\n- hi\n"
