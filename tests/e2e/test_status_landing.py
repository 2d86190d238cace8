"""`uet status` / `uet runs` / `uet show` say truthfully what landed: a partial landing is
"landed 2 of 3" with landed-ness per workstream, nothing is "landed" after a rollback, a
blocked workstream shows why, and a workstream allowed to change the checks that did is
marked."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.helpers import run_ok, setup_repo


def three(tmp_path: Path) -> Path:
    ws = {w: {"tool": "shell", "command": f"echo {w} > {w}.txt", "scope": {"allow": [f"{w}.txt"]}}
          for w in ("a", "b", "c")}
    return setup_repo(tmp_path / "r", workstreams=ws)


def test_partial_landing_is_not_landed(tmp_path: Path) -> None:
    repo = three(tmp_path)
    run_ok(repo, "run", "--land", "never", "-q")
    out = run_ok(repo, "status").stdout
    assert "landed" not in out.splitlines()[0]
    assert "LANDED" not in out  # nothing landed: no column
    run_ok(repo, "land", "--only", "a")
    out = run_ok(repo, "status").stdout
    head = out.splitlines()[0]
    assert "(landed 1 of 3, finished)" in head, head
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:5]}
    assert rows["a"][-1] == "yes" and rows["b"][-1] == "no" and rows["c"][-1] == "no", out
    data = json.loads(run_ok(repo, "status", "--json").stdout)
    assert data["landed"] is False and data["landed_workstreams"] == ["a"]
    assert {w["ws"]: w["landed"] for w in data["workstreams"]} == \
        {"a": True, "b": False, "c": False}
    runs = json.loads(run_ok(repo, "runs", "--json").stdout)
    assert runs[0]["landed"] is False and runs[0]["landed_workstreams"] == ["a"]
    assert run_ok(repo, "runs").stdout.splitlines()[1].split()[-1] == "3"  # "1 of 3"
    run_ok(repo, "report", "-o", str(repo.parent / "r.html"))
    assert "finished, landed 1 of 3" in (repo.parent / "r.html").read_text()
    run_ok(repo, "land")  # the rest
    out = run_ok(repo, "status").stdout
    assert "(landed, finished)" in out.splitlines()[0]
    data = json.loads(run_ok(repo, "status", "--json").stdout)
    assert data["landed"] is True and sorted(data["landed_workstreams"]) == ["a", "b", "c"]
    run_ok(repo, "rollback", "--yes")
    out = run_ok(repo, "status").stdout
    assert "landed" not in out.splitlines()[0] and "LANDED" not in out, out
    data = json.loads(run_ok(repo, "status", "--json").stdout)
    assert data["landed"] is False and data["landed_workstreams"] == []
    assert json.loads(run_ok(repo, "runs", "--json").stdout)[0]["landed"] is False
    assert run_ok(repo, "runs").stdout.splitlines()[1].split()[-1] == "no"


def test_blocked_reason_and_changed_checks(tmp_path: Path) -> None:
    ws = {"bad": {"tool": "shell", "command": "exit 3"},
          "dep": {"tool": "shell", "command": "echo d > d.txt", "depends_on": ["bad"]},
          "chk": {"tool": "shell", "command": "printf '[run]\\njobs = 2\\n' > uet.toml",
                  "may_change_checks": True, "scope": {"allow": ["uet.toml"]}}}
    repo = setup_repo(tmp_path / "r", workstreams=ws, config="[run]\n")
    run_ok(repo, "run", "-q", code=1)
    out = run_ok(repo, "status").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert "dependency-quarantined (bad)" in rows["dep"], out
    assert "changes checks" in rows["chk"] and "changes checks" not in rows["bad"], out
    data = json.loads(run_ok(repo, "status", "--json").stdout)
    recs = {w["ws"]: w for w in data["workstreams"]}
    assert recs["dep"]["reason"] == "dependency-quarantined"
    assert recs["dep"]["blocked_by"] == "bad"
    assert recs["chk"]["changes_checks"] is True and recs["bad"]["changes_checks"] is False
    shown = run_ok(repo, "show", "chk").stdout
    assert "changes checks: yes" in shown and "uet.toml" in shown, shown
    assert "changes checks" not in run_ok(repo, "show", "bad").stdout
    assert "blocked by: bad" in run_ok(repo, "show", "dep").stdout
