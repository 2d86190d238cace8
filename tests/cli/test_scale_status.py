"""`uet status --json` prints what ``json.dumps(obj, indent=2)`` would, through its own faster
writer (cli/status.py ``json_text``): the same text for every value JSON has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import uet
from tests.hooks.ledgerkit import scripted_run
from uet_git.cli.status import json_text


@pytest.mark.parametrize("obj", [
    None, True, False, 0, -7, 2**70, 1.5, -0.0, 1e300, float("nan"), float("inf"),
    float("-inf"), "", "é \" \\ \n \t \u2028 \x00", [], {}, [[]], {"a": {}}, (1, "x"),
    {"a": [1, {"b": None, "c": [True, 2.5]}], "d": "e", "f": []},
    {1: "int key", "x": None}, {"nested": {2: "int key below"}}, Path("/a b"),
])
def test_json_text_is_json_dumps_with_an_indent_of_2(obj: object) -> None:
    assert json_text(obj) == json.dumps(obj, indent=2, default=str)


def test_status_json_reads_as_json_dumps_would_print_it(repo: Path) -> None:
    s, _ = scripted_run(repo)
    out = uet("status", s.run, "--json", cwd=repo).stdout
    assert out == json.dumps(json.loads(out), indent=2) + "\n"
    assert {w["ws"] for w in json.loads(out)["workstreams"]} == {"a", "b", "c", "d", "e"}
