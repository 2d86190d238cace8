"""The run's final summary says ``landed`` only when the work is on the target: never with
``--land never``, even when everything committed."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import json_lines, run_ok, setup_repo


def _summary(text: str) -> dict[str, object]:
    got = [line for line in json_lines(text) if line.get("event") == "summary"]
    assert got, text
    return got[-1]


def test_land_never_is_not_landed_and_land_end_is(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    never = _summary(run_ok(repo, "run", "--land", "never", "--json").stdout)
    assert never["exit_code"] == 0 and never["landed"] is False
    repo2 = setup_repo(tmp_path / "r2", workstreams={"a": {"command": "echo a > a.txt"}})
    end = _summary(run_ok(repo2, "run", "--json").stdout)
    assert end["exit_code"] == 0 and end["landed"] is True
