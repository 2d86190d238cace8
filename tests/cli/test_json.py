"""Every reading command's --json parses and has exactly the fields docs/json.md documents
(each always present; "optional" ones may be absent), and the no-runs / unknown-run cases
agree between commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import git, make_repo
from tests.e2e.helpers import json_lines, run, run_ok, setup_repo
from tests.hooks.ledgerkit import scripted_run
from uet_git.ledger.states import STATES

DOC = Path(__file__).resolve().parents[2] / "docs" / "json.md"
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \| (.*) \|$")


def sections() -> dict[str, dict[str, dict[str, bool]]]:
    """``{heading: {prefix: {field: required}}}`` from docs/json.md's tables."""
    out: dict[str, dict[str, dict[str, bool]]] = {}
    heading = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            out[heading] = {}
            continue
        m = ROW.match(line)
        if not m or not heading:
            continue
        name, meaning = m.group(1), m.group(3)
        prefix, _, field = name.rpartition(".")
        out[heading].setdefault(prefix, {})[field] = "optional" not in meaning
    return out


def section(command: str) -> dict[str, dict[str, bool]]:
    found = [v for k, v in sections().items() if k.startswith(f"`uet {command} ")
             or k.startswith(f"`uet {command}`")]
    assert found, f"docs/json.md has no section for uet {command}"
    return found[0]


def conforms(obj: Any, docs: dict[str, dict[str, bool]], prefix: str = "") -> None:
    """``obj`` has every required documented field at ``prefix`` and no undocumented one;
    nested documented objects and lists are checked too."""
    if isinstance(obj, list):
        for item in obj:
            conforms(item, docs, f"{prefix}[]")
        return
    assert isinstance(obj, dict), (prefix, obj)
    fields = docs.get(prefix)
    assert fields is not None, f"{prefix}: not documented"
    keys = set(obj)
    assert keys <= set(fields), (prefix, keys - set(fields))
    required = {f for f, req in fields.items() if req}
    assert required <= keys, (prefix, required - keys)
    for key, value in obj.items():
        child = f"{prefix}.{key}" if prefix else key
        if value is None:
            continue
        nested = f"{child}[]" if isinstance(value, list) else child
        if isinstance(value, list | dict) and nested in docs:
            conforms(value, docs, child)


def uet_json(repo: Path, *args: str, code: int = 0) -> Any:
    proc = run(repo, *args)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def sample(tmp_path: Path) -> tuple[Path, str]:
    ws = {"a": {"tool": "shell", "command": "echo a > a.txt", "scope": {"allow": ["a.txt"]}},
          "b": {"tool": "shell", "command": "echo b > b.txt", "scope": {"allow": ["b.txt"]}},
          "bad": {"tool": "shell", "command": "exit 3", "scope": {"allow": ["x"]}},
          "dep": {"tool": "shell", "command": "echo d > d.txt", "depends_on": ["bad"],
                  "scope": {"allow": ["d.txt"]}}}
    repo = setup_repo(tmp_path / "r", workstreams=ws)
    lines = json_lines(run_ok(repo, "run", "--land", "never", "--json", code=1).stdout)
    run_id = lines[0]["run"]
    run_ok(repo, "land", "--only", "a")
    return repo, run_id


def test_every_reading_command_matches_its_documented_schema(tmp_path: Path) -> None:
    repo, run_id = sample(tmp_path)
    status = uet_json(repo, "status", "--json")
    conforms(status, section("status"))
    assert list(status["counts"]) == [*STATES, "pending"]  # every state, zeros included
    assert status["counts"]["committed"] == 2 and status["counts"]["validated"] == 0
    assert status["landed_workstreams"] == ["a"] and status["landed"] is False
    runs = uet_json(repo, "runs", "--json")
    conforms(runs, section("runs"))
    assert list(runs[0]["counts"]) == [*STATES, "pending"]
    conforms(uet_json(repo, "log", "--json"), section("log"))
    conforms(uet_json(repo, "log", "--ws", "a", "--json"), section("log"))
    show = uet_json(repo, "show", "a", "--json")
    conforms(show, section("show"))
    assert show["change"]["what"] == "candidate" and show["landed"] is True
    assert show["evidence"]["paths"][0].startswith(f"refs/uet/ledger/{run_id}:evidence/a/1/")
    assert git(repo, "show", show["evidence"]["paths"][0]) is not None
    conforms(uet_json(repo, "show", "dep", "--json"), section("show"))
    conforms(uet_json(repo, "validate", "--json"), section("validate"))
    check = uet_json(repo, "check", "--json", "HEAD~1..HEAD")
    conforms(check, section("check"))
    assert check["ok"] and check["checked"] == 1
    fsck = uet_json(repo, "fsck", "--json")
    conforms(fsck, section("fsck"))
    assert fsck["clean"] and fsck["repaired"] is None
    repaired = uet_json(repo, "fsck", "--repair", "--json")
    conforms(repaired, section("fsck"))
    assert repaired["repaired"] == []
    gc = uet_json(repo, "gc", "--dry-run", "--older-than", "0s", "--json")
    conforms(gc, section("gc"))
    assert gc["dry_run"] and gc["runs"][0]["run"] == run_id
    conforms(uet_json(repo, "plan", "--json"), section("plan"))


def test_run_events_match_the_documented_fields(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"tool": "shell", "command": "echo a > a.txt", "acceptance": ["test -f a.txt"]}},
        config="[hooks]\npre-merge = [\"true\"]\n")
    docs = section("run")
    alias = {"acceptance": "tool", "verify": "tool"}
    objs = json_lines(run_ok(repo, "run", "--json").stdout)
    kinds = set()
    for obj in objs:
        kind = obj["event"]
        step, _, edge = kind.partition("-")
        key = f"{alias.get(step, step)}-{edge}" if edge in ("started", "finished") else kind
        key = "start" if key == "resume" else key
        kinds.add(key)
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", obj["time"]), obj
        conforms({k: v for k, v in obj.items() if k not in ("event", "time")}, docs, key)
    assert {"start", "transition", "tool-started", "tool-finished", "summary"} <= kinds
    assert list(objs[-1]["counts"]) == [*STATES, "pending"]
    dry = json_lines(run_ok(repo, "run", "--dry-run", "--json").stdout)
    assert len(dry) == 1 and dry[0]["event"] == "dry-run"
    conforms({k: v for k, v in dry[0].items() if k != "event"}, docs, "dry-run")


def test_no_runs_and_unknown_runs_agree(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "r")
    # no run at all, none named: every reader says so and exits 0
    assert uet_json(r, "status", "--json") is None
    assert uet_json(r, "log", "--json") == []
    assert uet_json(r, "runs", "--json") == []
    for cmd in ("status", "log", "runs"):
        proc = run(r, cmd)
        assert proc.returncode == 0 and proc.stdout.startswith("No runs yet"), (cmd, proc)
    # a run named that does not exist: one line, exit 2, for every command (runs or not)
    recorded = make_repo(tmp_path / "s")
    scripted_run(recorded)  # a ledger written directly: no tool runs
    for repo in (r, recorded):
        for args in (["status", "nope"], ["log", "nope"], ["show", "a", "nope"],
                     ["status", "nope", "--json"], ["log", "nope", "--json"]):
            proc = run(repo, *args)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert proc.stderr.startswith("uet: ") and proc.stderr.count("\n") == 1


def test_fsck_and_check_json_keep_their_exit_codes(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    s, _ = scripted_run(repo)
    git(repo, "update-ref", "-d", f"refs/uet/committed/{s.run}/a")
    bad = uet_json(repo, "fsck", "--json", code=1)
    conforms(bad, section("fsck"))
    assert bad["clean"] is False and any("a" in p for p in bad["problems"])
    fixed = uet_json(repo, "fsck", "--repair", s.run, "--json")
    assert fixed["clean"] is True and fixed["run"] == s.run
    assert fixed["repaired"] and all(f["run"] == s.run and f["fix"] for f in fixed["repaired"])
    # a quarantined patch merged by hand fails the check, in JSON too
    git(repo, "merge", "-q", "--no-edit", s.patches["b"])
    check = uet_json(repo, "check", "--json", f"{s.base}..main", code=1)
    conforms(check, section("check"))
    assert check["ok"] is False and len(check["problems"]) == 1
