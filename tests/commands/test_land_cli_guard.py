"""The landing guards as a user meets them, through the `uet` command: a forged integration ref
refused and repaired with `uet fsck --repair`, an unrelated modified file kept while landing.
(An ignored file in the way and a rebase in progress refused in one line, after a real run:
tests/e2e/test_adversarial.py.)"""

from __future__ import annotations

from pathlib import Path

from tests.commands.landkit import fsck_clean, head_of, two_committed
from tests.conftest import git, uet


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("uet: ") and "Traceback" not in stderr, stderr
    return lines[0]


def test_forged_integration_ref_refused_then_repaired(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    iref = f"refs/uet/integration/{b.run}"
    forged = git(b.path, "commit-tree", git(b.path, "write-tree"), "-p", b.base,
                 "-m", "forged by a tool")
    git(b.path, "update-ref", iref, forged)
    for args in (["land", b.run], ["land", b.run, "--rebase"], ["rollback", b.run]):
        proc = uet(*args, cwd=b.path)
        assert proc.returncode != 0, args
        line = one_line_error(proc.stderr)
        assert iref in line and forged[:12] in line and b.tip[:12] in line, line
        assert f"uet fsck --repair {b.run}" in line
    assert head_of(b.path) == b.base
    assert git(b.path, "rev-parse", iref) == forged
    check = uet("fsck", b.run, cwd=b.path)
    assert check.returncode == 1 and iref in check.stdout
    repaired = uet("fsck", "--repair", b.run, cwd=b.path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert iref in repaired.stdout and "uet fsck: clean" in repaired.stdout
    assert git(b.path, "rev-parse", iref) == b.tip
    assert git(b.path, "log", "-1", "--format=%s", f"refs/uet/ledger/{b.run}") == "run: repair"
    proc = uet("land", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert head_of(b.path) == b.tip
    assert forged not in git(b.path, "rev-list", "main").split()
    fsck_clean(b.path)
    assert uet("fsck", "--repair", cwd=b.path).returncode == 0  # every run: nothing to fix


def test_land_with_an_unrelated_modified_file(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    mine = b"uncommitted \x00 bytes\r\n"
    (b.path / "src/c.txt").write_bytes(mine)
    proc = uet("land", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert f"landed run {b.run} on main" in proc.stdout
    assert head_of(b.path) == b.tip
    assert (b.path / "src/c.txt").read_bytes() == mine
    assert (b.path / "a.txt").read_text() == "alpha changed by ws-a\n"
    assert git(b.path, "status", "--porcelain") == "M src/c.txt"
    fsck_clean(b.path)
