"""``uet gc`` removes the worktrees the pool keeps between runs once they are idle longer than
``--older-than`` (listed by ``--dry-run`` and in the JSON), and never a live run's."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, uet


def _slots(repo: Path) -> list[str]:
    out = git(repo, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines()
            if line.startswith("worktree ") and "/uet/worktrees/" in line]


def test_gc_removes_idle_kept_worktrees(repo: Path, tmp_path: Path):
    ws = tmp_path / "ws"
    ws.mkdir()
    for i in (1, 2):
        (ws / f"w{i}.json").write_text(json.dumps(
            {"id": f"w{i}", "tool": "shell", "command": f"echo {i} > w{i}.txt"}))
    r = uet("run", str(ws), "-j", "2", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    kept = _slots(repo)
    assert kept, "the pool keeps its worktrees between runs"

    young = uet("gc", "--json", cwd=repo)  # idle for less than 30 days: kept
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout)["worktrees"] == []
    assert _slots(repo) == kept

    dry = uet("gc", "--older-than", "0s", "--dry-run", "--json", cwd=repo)
    assert sorted(json.loads(dry.stdout)["worktrees"]) == sorted(kept)
    assert _slots(repo) == kept

    gone = uet("gc", "--older-than", "0s", cwd=repo)
    assert gone.returncode == 0, gone.stderr
    assert "removed the idle worktree" in gone.stdout
    assert _slots(repo) == []
    assert git(repo, "status", "--porcelain") == ""
    (ws / "w1.json").write_text(json.dumps(
        {"id": "w1", "tool": "shell", "command": "echo again > w1.txt"}))
    again = uet("run", str(ws), "-j", "2", "--only", "w1", cwd=repo)  # new slots are made
    assert again.returncode == 0, again.stdout + again.stderr
