"""One vocabulary across the commands (issue 12): `none -> created` everywhere, plurals that
agree with their number, waves numbered the same by `uet plan` and `uet run --dry-run`, and a
run started with --only showing only what it selected."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.e2e.helpers import run_ok, setup_repo


def chain(tmp_path: Path) -> Path:
    return setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt", "scope": {"allow": ["a.txt"]}},
        "b": {"command": "echo b > b.txt", "depends_on": ["a"], "scope": {"allow": ["b.txt"]}},
        "c": {"command": "echo c > c.txt", "scope": {"allow": ["c.txt"]}},
    })


def waves(text: str) -> dict[str, str]:
    return {m.group(1): " ".join(m.group(2).split())
            for m in re.finditer(r"^\s*wave (\d+): (.*)$", text, re.M)}


def test_plan_and_dry_run_number_waves_alike(tmp_path: Path) -> None:
    repo = chain(tmp_path)
    planned = waves(run_ok(repo, "plan").stdout)
    dry = run_ok(repo, "run", "--dry-run").stdout
    assert planned == waves(dry) == {"1": "a c", "2": "b"}, dry
    assert "dry run: 3 workstreams, 4 workers" in dry
    # --only keeps the plan's numbers for what it selects
    only = run_ok(repo, "run", "--dry-run", "--only", "b", "-j", "1").stdout
    assert waves(only) == {"1": "a", "2": "b"}, only
    assert "dry run: 2 workstreams, 1 worker," in only
    assert "critical path: 2 (a -> b)" in only and "lower bound with 1 worker: 2" in only


def test_one_vocabulary_and_plurals(tmp_path: Path) -> None:
    repo = chain(tmp_path)
    out = run_ok(repo, "run", "-j", "1").stdout
    assert "a: none -> created  shell produced 1 changed path\n" in out, out
    assert "1 changed path within scope and limits" in out
    assert " new -> " not in out and "1 changed paths" not in out
    assert "uet: run " in out and "3 workstreams, 1 worker, target main" in out
    assert "3 workstreams: 3 committed" in out  # the final counts read as `uet status`'s
    log = run_ok(repo, "log").stdout
    assert "a: none -> created" in log and "1 changed path" in log
    assert "1 changed paths" not in log
    status = run_ok(repo, "status").stdout
    assert status.splitlines()[-1] == "3 workstreams: 3 committed"


def test_a_run_with_only_lists_only_what_it_selected(tmp_path: Path) -> None:
    repo = chain(tmp_path)
    run_ok(repo, "run", "--only", "a", "-q")
    out = run_ok(repo, "status").stdout
    assert out.splitlines()[-1] == "1 workstream: 1 committed", out
    assert "pending" not in out and "\nb " not in out and "\nc " not in out
    data = json.loads(run_ok(repo, "status", "--json").stdout)
    assert [w["ws"] for w in data["workstreams"]] == ["a"]
    assert data["counts"]["pending"] == 0


def test_drop_dry_run_of_the_last_commit_says_where_the_integration_goes(tmp_path: Path) -> None:
    repo = chain(tmp_path)
    run_ok(repo, "run", "--land", "never", "--only", "b", "-q")  # a then b
    out = run_ok(repo, "drop", "b", "--dry-run").stdout
    assert "would re-make nothing" not in out
    assert "(its change is the last on it)" in out, out
    assert "would move refs/uet/committed/" in out and "nothing written" in out


def test_retry_says_the_summary_once(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"bad": {"command": "exit 3"}})
    run_ok(repo, "run", "--land", "never", "-q", code=1)
    out = run_ok(repo, "retry", "bad", code=1).stdout
    assert out.count("not landed (--land never)") == 1, out


def test_plan_and_dry_run_name_the_old_pipelines_variables(tmp_path: Path) -> None:
    repo = chain(tmp_path)
    env = {"PIPELINE_ENGINE": "legacy"}
    for args in (["plan"], ["run", "--dry-run"], ["validate"]):
        out = run_ok(repo, *args, env=env).stdout
        assert out.count("PIPELINE_ENGINE is set but uet ignores it") == 1, (args, out)
    data = json.loads(run_ok(repo, "plan", "--json", env=env).stdout)
    assert any("PIPELINE_ENGINE" in w for w in data["warnings"])


def test_one_acceptance_command_and_one_uet_patch(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": ["test -f a.txt"]}})
    run_ok(repo, "run", "-q")
    log = run_ok(repo, "log").stdout
    assert "acceptance: 1 command passed in" in log and "1 commands" not in log, log
    out = run_ok(repo, "check", "HEAD~1..HEAD").stdout
    assert "uet check: 1 uet patch, all committed by the ledger" in out


def test_dry_run_says_when_an_api_key_gives_claude_its_own_config_dir(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "c": {"tool": "claude", "prompt": "do it", "scope": {"allow": ["c.txt"]}}})
    out = run_ok(repo, "run", "--dry-run", env={"ANTHROPIC_API_KEY": "k"}).stdout
    assert "claude: ANTHROPIC_API_KEY is set, so each attempt gets its own CLAUDE_CONFIG_DIR" \
        in out, out
    plain = run_ok(repo, "run", "--dry-run", env={"ANTHROPIC_API_KEY": ""}).stdout
    assert "CLAUDE_CONFIG_DIR" not in plain
