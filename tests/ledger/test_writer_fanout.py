"""A big run's evidence is fanned out (evidence/_XY/WS/N): the trees a transition writes stay
small whatever the number of workstreams; readers, reopening and fsck accept both layouts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.evidence import (
    FANOUT_ABOVE,
    bucket,
    evidence,
    evidence_attempts,
    evidence_path,
)
from uet_git.ledger.fsck import fsck
from uet_git.ledger.writer import Ledger

RUN = "20261201-120000-fa40"


def _plan(n: int) -> dict[str, object]:
    return {"nodes": [{"id": f"w{i}", "depends_on": []} for i in range(n)]}


def _patch(repo: Repo, base: str, ws: str) -> str:
    tree = objects.build_tree(repo, base, {f"{ws}.txt": ws.encode()})
    return objects.make_commit(repo, tree, [base], f"{ws}: change\n")


def _tree_entries(path: Path, rev: str) -> int:
    return len(git(path, "ls-tree", rev).splitlines())


def test_a_big_run_fans_its_evidence_out(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    n = FANOUT_ABOVE + 44
    ledger = Ledger.create(repo, base=base, target="main", plan=_plan(n), run_id=RUN)
    # The layout is decided by the plan's size at run start; a few dozen of its workstreams
    # recorded show it: more workstreams than top-level entries can only be buckets.
    recorded = 48
    for i in range(recorded):
        ws = f"w{i}"
        ledger.record(ws, "created", attempt=1, patch=_patch(repo, base, ws),
                      evidence={"tool.stdout": f"out of {ws}\n".encode()})
    tip = f"refs/uet/ledger/{RUN}"
    # The top evidence tree has at most 256 buckets, never one entry per workstream.
    top = _tree_entries(path, f"{tip}:evidence")
    assert top <= 256 and top < recorded
    assert git(path, "show", f"{tip}:evidence/{bucket('w7')}/w7/1/tool.stdout") == "out of w7"
    assert evidence(repo, RUN, "w7", 1, "tool.stdout") == b"out of w7\n"
    assert evidence(repo, RUN, "w7", 1) == ["tool.stdout"]
    assert evidence_attempts(repo, RUN, "w7") == [1]
    assert evidence_path(repo, RUN, "w7", 1) == f"evidence/{bucket('w7')}/w7/1"
    ledger.close()

    # Reopened, the writer keeps the layout the run already uses.
    ledger = Ledger.open(repo, RUN)
    ledger.record("w7", "validated", attempt=1, evidence={"validate.log": b"ok\n"})
    assert evidence(repo, RUN, "w7", 1, "validate.log") == b"ok\n"
    assert not git(path, "ls-tree", f"{tip}:evidence", "w7")
    ledger.close()
    assert fsck(repo, RUN) == []
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_small_run_keeps_the_flat_layout(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    ledger = Ledger.create(repo, base=base, target="main", plan=_plan(3), run_id=RUN)
    ledger.record("w1", "created", attempt=1, patch=_patch(repo, base, "w1"),
                  evidence={"tool.stdout": b"hi\n"})
    ledger.close()
    assert git(path, "show", f"refs/uet/ledger/{RUN}:evidence/w1/1/tool.stdout") == "hi"
    assert evidence_path(repo, RUN, "w1", 1) == "evidence/w1/1"
    ledger = Ledger.open(repo, RUN)
    ledger.record("w2", "created", attempt=1, patch=_patch(repo, base, "w2"),
                  evidence={"tool.stdout": b"two\n"})
    ledger.close()
    assert git(path, "show", f"refs/uet/ledger/{RUN}:evidence/w2/1/tool.stdout") == "two"
