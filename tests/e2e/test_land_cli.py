"""`uet land`, `uet rollback`, `uet drop`, `uet retry` as a user runs them (the real entry point
in a subprocess), on ledgers scripted with the real writer; checked with the git CLI."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git, make_repo, uet
from tests.engine.test_actions import quarantined_chain, state_refs
from tests.engine.test_land import fsck_clean, head_of, snapshot_files, two_committed
from uet_git.ledger.writer import Ledger


def one_line_error(proc_stderr: str) -> str:
    lines = proc_stderr.strip().splitlines()
    assert len(lines) == 1, proc_stderr
    assert lines[0].startswith("uet: "), proc_stderr
    assert "Traceback" not in proc_stderr
    return lines[0]


def test_land_and_rollback_commands(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    proc = uet("land", cwd=b.path)  # the latest run by default
    assert proc.returncode == 0, proc.stderr
    assert f"landed run {b.run} on main" in proc.stdout
    assert head_of(b.path) == b.tip
    assert git(b.path, "status", "--porcelain") == ""
    again = uet("land", b.run, cwd=b.path)
    assert again.returncode == 0 and "already" in again.stdout
    proc = uet("rollback", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "rolled back run" in proc.stdout
    assert head_of(b.path) == b.base
    out = git(b.path, "for-each-ref", "--format=%(refname)", f"refs/uet/rolled-back/{b.run}/")
    assert out.splitlines() == [f"refs/uet/rolled-back/{b.run}/ws-a",
                                f"refs/uet/rolled-back/{b.run}/ws-b"]
    proc = uet("rollback", cwd=b.path)
    assert proc.returncode == 1
    assert "already rolled back" in one_line_error(proc.stderr)
    fsck_clean(b.path)


def test_land_dirty_checkout_exit_1_files_untouched(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "a.txt").write_bytes(b"uncommitted \x00 bytes\r\n")
    (b.path / "scratch.txt").write_text("untracked\n")
    git(b.path, "add", "scratch.txt")
    before = snapshot_files(b.path)
    index_before = git(b.path, "ls-files", "-s")
    proc = uet("land", b.run, cwd=b.path)
    assert proc.returncode == 1
    line = one_line_error(proc.stderr)
    assert "local changes" in line and f"`uet land {b.run}`" in line
    assert snapshot_files(b.path) == before
    assert git(b.path, "ls-files", "-s") == index_before
    assert head_of(b.path) == b.base
    assert git(b.path, "rev-parse", f"refs/uet/integration/{b.run}") == b.tip
    fsck_clean(b.path)


def test_land_target_moved_exit_1_rebase_advice(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "commit", "-q", "--allow-empty", "-m", "someone else")
    moved = head_of(b.path)
    proc = uet("land", cwd=b.path)
    assert proc.returncode == 1
    assert f"`uet land {b.run} --rebase`" in one_line_error(proc.stderr)
    assert head_of(b.path) == moved


def test_commands_refuse_a_live_run(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    with Ledger.open(b.repo, b.run):
        for args in (["land", b.run], ["rollback", b.run], ["drop", "ws-a"],
                     ["retry", "ws-a", "--run", b.run]):
            proc = uet(*args, cwd=b.path)
            assert proc.returncode == 2, (args, proc.stderr)
            assert "another uet process" in one_line_error(proc.stderr)
    assert state_refs(b)["ws-a"] == "quarantined"


def test_drop_command(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    proc = uet("drop", "ws-x", "--run", b.run, cwd=b.path)
    assert proc.returncode == 2
    assert one_line_error(proc.stderr) == ("uet: ws-x is committed; only quarantined or blocked "
                                           "workstreams can be dropped")
    proc = uet("drop", "ws-a", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "ws-b, ws-c, ws-d" in proc.stdout
    assert state_refs(b)["ws-a"] == "dropped"
    fsck_clean(b.path)


def test_no_runs(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "empty")
    for args in (["land"], ["rollback"], ["drop", "ws-a"], ["retry", "ws-a"]):
        proc = uet(*args, cwd=path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "no runs" in one_line_error(proc.stderr)
