"""`uet gc` never makes a patch unreachable unless asked: dropped and rolled-back workstreams
keep their refs; `--prune-dropped` removes them and lists each."""

from __future__ import annotations

from pathlib import Path

from tests.commands.landkit import scripted_run
from tests.conftest import git, uet
from uet_git.commands.actions import drop_ws


def refs_of(path: Path, run: str) -> list[str]:
    out = git(path, "for-each-ref", "--format=%(refname)", "refs/uet/")
    return [n for n in out.splitlines() if f"/{run}/" in n or n.endswith(f"/{run}")]


def test_gc_keeps_dropped_patches_unless_prune_dropped(tmp_path: Path) -> None:
    b = scripted_run(tmp_path / "repo", [
        ("ws-a", "committed", {"a.txt": b"A\n"}),
        ("ws-q", "quarantined:verify-failed", {"b.txt": b"Q\n"}),
    ])
    drop_ws(b.repo, b.run, "ws-q")
    patch = f"refs/uet/patches/{b.run}/ws-q/1"
    assert git(b.path, "rev-parse", patch) == b.patches["ws-q"]
    proc = uet("gc", "--older-than", "0s", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "ws-q" not in proc.stdout
    assert patch in refs_of(b.path, b.run)
    assert f"refs/uet/dropped/{b.run}/ws-q" in refs_of(b.path, b.run)
    assert f"refs/uet/committed/{b.run}/ws-a" not in refs_of(b.path, b.run)
    dry = uet("gc", "--older-than", "0s", "--prune-dropped", "--dry-run", cwd=b.path)
    assert dry.returncode == 0, dry.stderr
    assert "would prune ws-q (dropped): " in dry.stdout and patch in dry.stdout
    assert patch in refs_of(b.path, b.run)
    proc = uet("gc", "--older-than", "0s", "--prune-dropped", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "pruned ws-q" in ln)
    assert patch in line and b.patches["ws-q"][:12] in line
    assert patch not in refs_of(b.path, b.run)
    assert f"refs/uet/dropped/{b.run}/ws-q" not in refs_of(b.path, b.run)
    assert f"refs/uet/ledger/{b.run}" in refs_of(b.path, b.run)
    assert uet("fsck", b.run, cwd=b.path).returncode == 0
