"""`uet completion bash|zsh|fish` prints click's script, and click's completion protocol
(``_UET_COMPLETE=bash_complete COMP_WORDS=... COMP_CWORD=...``, what the script runs on TAB)
completes run ids and workstream ids read from the refs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_repo, uet
from tests.e2e.helpers import setup_repo
from tests.hooks.ledgerkit import PLAN, scripted_run
from uet_git.gitrepo import Repo
from uet_git.ledger.writer import Ledger


def complete(repo: Path, line: str, shell: str = "bash") -> list[str]:
    """What TAB offers after ``line`` (a trailing space: a new word), as (type, value)
    pairs are reduced to the values."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    proc = uet(cwd=repo, env={"_UET_COMPLETE": f"{shell}_complete", "COMP_WORDS": line,
                              "COMP_CWORD": str(cword)})
    assert proc.returncode == 0, proc.stderr
    if shell == "bash":  # "type,value" per line
        return [ln.split(",", 1)[1] for ln in proc.stdout.splitlines() if ln]
    lines = proc.stdout.splitlines()  # zsh: type, value, help, per item
    return [lines[i + 1] for i in range(0, len(lines), 3)]


@pytest.mark.parametrize("shell,marker", [("bash", "complete -o nosort -F _uet_completion"),
                                          ("zsh", "#compdef uet"),
                                          ("fish", "complete --no-files --command uet")])
def test_the_script_for_each_shell(repo: Path, shell: str, marker: str) -> None:
    proc = uet("completion", shell, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout and "_UET_COMPLETE" in proc.stdout


def test_an_unknown_shell_is_a_usage_error(repo: Path) -> None:
    proc = uet("completion", "tcsh", cwd=repo)
    assert proc.returncode == 2 and "tcsh" in proc.stderr


def two_runs(path: Path) -> tuple[str, str]:
    first, _ = scripted_run(path)
    r = Repo.open(path)
    base = r.rev_parse("HEAD")
    assert base
    with Ledger.create(r, base=base, target="main",
                       plan={"nodes": [{"id": "zeta", "depends_on": []},
                                       {"id": "zed", "depends_on": []}]}) as led:
        second = led.run
    return first.run, second


def test_run_ids_and_workstream_ids_complete(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    first, second = two_runs(repo)
    assert complete(repo, "uet status ") == [second, first]  # newest first
    assert complete(repo, f"uet land {first[:-2]}") == [first]
    assert complete(repo, "uet show a --run ") == [second, first]
    assert complete(repo, f"uet log {first} --ws ") == [n["id"] for n in PLAN["nodes"]]
    # the workstreams of the latest run (its plan's, none started), then of a named one
    assert complete(repo, "uet show ") == ["zeta", "zed"]
    assert complete(repo, "uet retry ze") == ["zeta", "zed"]
    assert complete(repo, f"uet retry --run {first} ") == [n["id"] for n in PLAN["nodes"]]
    assert complete(repo, f"uet diff --run {first} b") == ["b"]
    assert complete(repo, "uet show zet", shell="zsh") == ["zeta"]
    assert "status" in complete(repo, "uet sta")


def test_nothing_to_complete_outside_a_repository(tmp_path: Path) -> None:
    assert complete(tmp_path, "uet status ") == []
    assert complete(tmp_path, "uet show ") == []
    assert complete(make_repo(tmp_path / "empty"), "uet show ") == []


def test_land_only_completes_the_last_of_a_comma_list(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    first, _ = two_runs(repo)
    assert complete(repo, f"uet land {first} --only ") == [n["id"] for n in PLAN["nodes"]]
    assert complete(repo, f"uet land {first} --only a,") == \
        [f"a,{n['id']}" for n in PLAN["nodes"] if n["id"] != "a"]
    assert complete(repo, f"uet land {first} --exclude c,d,b") == ["c,d,b"]


def test_run_only_completes_the_workstream_files(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"alpha": {"command": "true"},
                                                   "beta": {"command": "true"}})
    assert complete(repo, "uet run --only ") == ["alpha", "beta"]
    assert complete(repo, "uet run --only alpha,") == ["alpha,beta"]
