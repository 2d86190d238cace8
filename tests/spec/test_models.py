"""The workstream and uet.toml models: ids (hostile ones included), fields, schema."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from uet_git.spec.models import Config, Scope, Workstream, check_id

GOOD_IDS = ["a", "ws-auth", "0", "a.b", "a_b", "x" * 100, "v1.2.3", "a-", "a.lock-not-end"]

HOSTILE_IDS = {
    "../x": "must match",
    "a..b": "'..'",
    "x.lock": ".lock",
    "x.": "end with '.'",
    "a b": "must match",
    "@{": "must match",
    "A": "must match",
    "-a": "must match",
    ".a": "must match",
    "a/b": "must match",
    "a~b": "must match",
    "a^b": "must match",
    "a:b": "must match",
    "a\\b": "must match",
    "a*": "must match",
    "a\n": "must match",  # '$' would accept a trailing newline: fullmatch must not
    "a\x00b": "must match",
    "a\x1b[31mred": "must match",
    "a\tb": "must match",
    "\u0430bc": "U+0430 CYRILLIC SMALL LETTER A",  # looks like Latin 'a'
    "w\u0455-x": "U+0455",  # Cyrillic dze, looks like 's'
    "a\u200bb": "U+200B",  # zero-width space
    "a\u2028b": "U+2028",  # line separator
    "\uff57\uff53": "U+FF57",  # full-width letters
    "x" * 101: "longer than 100",
    "y" * 10240: "longer than 100",
    "": "empty",
}


@pytest.mark.parametrize("ws_id", GOOD_IDS)
def test_good_ids(ws_id: str) -> None:
    assert check_id(ws_id) == ws_id
    assert Workstream(id=ws_id).id == ws_id


@pytest.mark.parametrize(("ws_id", "problem"), list(HOSTILE_IDS.items()))
def test_hostile_ids_refused_in_one_line(ws_id: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        check_id(ws_id)
    msg = str(info.value)
    assert problem in msg
    assert msg.isprintable(), repr(msg)  # control characters escaped: one line
    assert len(msg) < 250
    with pytest.raises(ValidationError):
        Workstream(id=ws_id)


def test_non_string_id() -> None:
    with pytest.raises(ValueError, match="must be a string, got int"):
        check_id(5)  # type: ignore[arg-type]


def test_depends_on_entries_are_ids() -> None:
    assert Workstream(id="a", depends_on=["b", "c"]).depends_on == ["b", "c"]
    with pytest.raises(ValidationError, match=r"\[1\] 'x y' must match"):
        Workstream(id="a", depends_on=["b", "x y"])


def test_scope_patterns_validated() -> None:
    assert Scope(allow=["src/"], deny=["src/x.py"]).allow == ["src/"]
    with pytest.raises(ValidationError, match=r"\[1\] '\.\./x'"):
        Scope(allow=["ok/", "../x"])
    with pytest.raises(ValidationError, match=r"reaches into \.git/"):
        Scope(deny=[".git/hooks/"])


def test_workstream_defaults_and_limits() -> None:
    ws = Workstream(id="a")
    got = (ws.tool, ws.timeout, ws.retries, ws.scope.allow, ws.source)
    assert got == ("shell", 900, 0, [], None)
    for bad in ({"timeout": 0}, {"retries": -1}, {"retries": 21}, {"estimate": 0},
                {"unknown": 1}, {"command": 5}, {"env": {"A": 1}}):
        with pytest.raises(ValidationError):
            Workstream.model_validate({"id": "a", **bad})


def test_config_model() -> None:
    cfg = Config.model_validate({
        "run": {"jobs": 8, "workstreams": "ws"},
        "tools": {"mytool": {"command": ["mytool", "{prompt_file}"], "output": "diff"}},
        "hooks": {"pre-merge": ["pytest -q"]},
        "verify": {"max_files": 10},
    })
    assert cfg.run.jobs == 8 and cfg.tools["mytool"].output == "diff"
    assert cfg.hooks.pre_merge == ["pytest -q"]
    with pytest.raises(ValidationError):
        Config.model_validate({"run": {"jobs": 0}})
    with pytest.raises(ValidationError):
        Config.model_validate({"tools": {"t": {"command": "x", "output": "zip"}}})


def test_json_schema_documents_the_id_rule() -> None:
    schema = Workstream.model_json_schema()
    assert schema["properties"]["id"]["pattern"] == "^[a-z0-9][a-z0-9._-]*$"
    assert schema["properties"]["id"]["maxLength"] == 100
    assert schema["required"] == ["id"]
    assert schema["additionalProperties"] is False
