"""`uet demo` end to end: the README's main command tells the whole story, checked with git."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import git, uet


def test_demo_lands_chain_and_quarantines_failures(tmp_path: Path) -> None:
    target = tmp_path / "demo"
    # (the demo's acceptance command is `python -m unittest`, whatever is installed)
    proc = uet("demo", str(target), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    refs = git(target, "for-each-ref", "--format=%(refname)", "refs/uet/")
    run = git(target, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/")
    assert run, refs

    def in_state(state: str) -> set[str]:
        prefix = f"refs/uet/{state}/{run}/"
        return {r[len(prefix):] for r in refs.splitlines() if r.startswith(prefix)}

    assert in_state("committed") >= {"add-mul", "add-div", "add-power", "add-cli"}
    assert "add-sqrt" in in_state("quarantined")
    assert in_state("blocked") == {"add-stats"}
    bumps = {"bump-minor", "bump-major"}
    assert len(in_state("committed") & bumps) == 1
    assert len(in_state("quarantined") & bumps) == 1

    # Landed on main, in dependency order, each commit naming its workstream.
    landed = git(target, "log", "--reverse", "--format=%(trailers:key=Uet-Workstream,valueonly)",
                 "main").split()
    assert landed.index("add-mul") < landed.index("add-power") < landed.index("add-cli")
    assert "add-sqrt" not in landed and "add-stats" not in landed

    # The integrated result passes its own tests, in a fresh checkout of main.
    check = tmp_path / "check"
    git(tmp_path, "clone", "-q", str(target), str(check))
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-q", "-s", "tests", "-t", "."],
        cwd=check, capture_output=True, text=True,
    )
    assert tests.returncode == 0, tests.stderr

    # The ledger reads as history and the repository is sound.
    subjects = git(target, "log", "--format=%s", f"refs/uet/ledger/{run}")
    assert re.search(r"^add-sqrt: \w+ -> quarantined$", subjects, re.M), subjects
    assert re.search(r"^add-stats: none -> blocked$", subjects, re.M), subjects
    git(target, "fsck", "--strict")
    assert git(target, "status", "--porcelain") == ""


def test_demo_refuses_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("mine\n")
    proc = uet("demo", str(tmp_path / "busy"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not empty" in proc.stderr
    assert (tmp_path / "busy" / "file").read_text() == "mine\n"
