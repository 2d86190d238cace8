"""A tool that rewrites a tracked file keeping its size and putting its mtime back (and plants
config telling git to trust less of the stat data) cannot leave that change in a kept slot: the
next workstream there starts from the exact tree, whether the slot is reset in process or by git.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import run_ok, setup_repo, states

FORGE = ("git config core.trustctime false; git config core.checkStat minimal; "
         "python3 -c \"import os; st = os.stat('f1.txt'); open('f1.txt', 'w').write('tampered');"
         " os.utime('f1.txt', ns=(st.st_atime_ns, st.st_mtime_ns))\"; echo a > wa.txt")


def test_a_forged_stat_does_not_survive_into_the_next_workstream(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", files={"f1.txt": "original"}, workstreams={
        "a-forge": {"tool": "shell", "command": FORGE, "acceptance": ["false"]},
        "b-check": {"tool": "shell", "command": "echo b > wb.txt",
                    "acceptance": ["grep -qx original f1.txt"]},
    })
    run_ok(repo, "run", "--jobs", "1", "--land", "never", code=1)
    assert states(repo) == {"a-forge": "quarantined", "b-check": "committed"}
    run = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/integration/")
    assert git(repo, "show", f"{run.strip()}:f1.txt") == "original"
    assert git(repo, "config", "--get", "core.trustctime", check=False) == ""
