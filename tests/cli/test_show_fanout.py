"""``uet show`` names evidence paths that ``git show`` reads, in a big run's fanned-out
layout (evidence/_XY/WS/N) as in a small run's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, make_repo, uet
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.evidence import FANOUT_ABOVE
from uet_git.ledger.writer import Ledger

RUN = "20261201-120000-fa41"


def test_show_names_the_fanned_out_evidence_path(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    n = FANOUT_ABOVE + 1
    plan = {"nodes": [{"id": f"w{i}", "depends_on": []} for i in range(n)]}
    ledger = Ledger.create(repo, base=base, target="main", plan=plan, run_id=RUN)
    tree = objects.build_tree(repo, base, {"w7.txt": b"w7"})
    patch = objects.make_commit(repo, tree, [base], "w7: change\n")
    ledger.record("w7", "created", attempt=1, patch=patch,
                  evidence={"tool.stdout": b"out of w7\n"})
    ledger.close()
    r = uet("show", "w7", RUN, "--json", cwd=path)
    assert r.returncode == 0, r.stdout + r.stderr
    paths = json.loads(r.stdout)["evidence"]["paths"]
    assert len(paths) == 1 and "/_" in paths[0]
    assert git(path, "show", paths[0]) == "out of w7"
    text = uet("show", "w7", RUN, cwd=path)
    assert f"git show {paths[0]}" in text.stdout
