"""Two processes and one run: one writer wins, the other is told at once; readers never block."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Forked, git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.writer import Ledger, LedgerBusy

RUN = "20261125-101502-3f2a"
RUN2 = "20261125-101503-0b0b"

def contender(path: Path, run: str, ws: str, go: Path, hold: float) -> int:
    """A process (a forked child) that waits for GO to exist, then tries to become the
    writer of RUN; the winner records a transition, holds the lock until GO.release exists
    or HOLD seconds pass, records another, and prints "won"."""
    repo = Repo.open(path)
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        ledger = Ledger.open(repo, run)
    except LedgerBusy as exc:
        print("busy:", exc, flush=True)
        return 2
    with ledger:
        ledger.record(ws, "blocked", attempt=1)
        print("holding", flush=True)
        end = time.time() + hold
        while time.time() < end and not go.with_name(go.name + ".release").exists():
            time.sleep(0.01)
        ledger.record(ws, "dropped", attempt=1)
    print("won", flush=True)
    return 0


def start(path: Path, run: str, ws: str, go: Path, hold: float) -> Forked:
    return Forked(lambda: contender(path, run, ws, go, hold))


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "repo")
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    for run in (RUN, RUN2):
        Ledger.create(repo, base=base, target="main", plan={}, run_id=run).close()
    return path


def git_fsck(path: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_two_processes_one_run_exactly_one_writes(repo_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [start(repo_path, RUN, f"w{i}", go, hold=60) for i in range(4)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    # Every loser exits on its own; the winner holds the lock until told to finish.
    first = [p.stdout.readline().strip() for p in procs]  # type: ignore[union-attr]
    assert sorted(x.split(":")[0] for x in first) == ["busy", "busy", "busy", "holding"], first
    (tmp_path / "go.release").touch()
    outs = [(a + b, c) for a, (b, c) in zip(first, (p.communicate(timeout=60) for p in procs),
                                            strict=True)]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2, 2, 2], outs
    winner = procs[codes.index(0)]
    for (out, err), code in zip(outs, codes, strict=True):
        if code == 2:
            assert out.startswith(f"busy: run {RUN} is being written by another uet process "
                                  f"(pid {winner.pid})"), out
            assert "Traceback" not in err
    refs = git(repo_path, "for-each-ref", "--format=%(refname)", f"refs/uet/dropped/{RUN}/")
    assert refs.splitlines() == [f"refs/uet/dropped/{RUN}/w{codes.index(0)}"]
    assert git(repo_path, "for-each-ref", f"refs/uet/blocked/{RUN}/") == ""
    assert fsck(Repo.open(repo_path), RUN) == []
    git_fsck(repo_path)


def test_busy_is_immediate_and_readers_do_not_block(repo_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    holder = start(repo_path, RUN, "w1", go, hold=60.0)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "ready"
    assert holder.stdout.readline().strip() == "holding"
    repo = Repo.open(repo_path)
    t0 = time.monotonic()
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        Ledger.open(repo, RUN)
    status = query.run_status(repo, RUN)  # a reader, while the writer holds the lock
    assert [(w.ws, w.state) for w in status.workstreams] == [("w1", "blocked")]
    assert time.monotonic() - t0 < 5.0  # not the holder's 60 s
    # Another run is not locked by this one.
    with Ledger.open(repo, RUN2) as other:
        other.record("x", "blocked", attempt=1)
    (tmp_path / "go.release").touch()
    holder.communicate(timeout=30)
    assert holder.returncode == 0
    with Ledger.open(repo, RUN) as again:  # released on exit
        assert again.state("w1").state == "dropped"


def test_a_dead_writer_releases_its_lock(repo_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    go.touch()
    holder = start(repo_path, RUN, "w1", go, hold=30.0)
    assert holder.stdout is not None
    assert [holder.stdout.readline().strip() for _ in range(2)] == ["ready", "holding"]
    with pytest.raises(Exception, match="being written"):
        Ledger.open(Repo.open(repo_path), RUN)
    holder.close()  # killed (SIGKILL) and reaped
    with Ledger.open(Repo.open(repo_path), RUN) as ledger:
        assert ledger.state("w1").state == "blocked"
    assert fsck(Repo.open(repo_path), RUN) == []


def test_two_runs_written_at_once_by_two_processes(repo_path: Path,
                                                         tmp_path: Path) -> None:
    """Two runs written at the same time by two processes: both succeed, both consistent."""
    go = tmp_path / "go"
    a = start(repo_path, RUN, "a", go, hold=0.2)
    b = start(repo_path, RUN2, "b", go, hold=0.2)
    for p in (a, b):
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    for p in (a, b):
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    repo = Repo.open(repo_path)
    assert fsck(repo) == []
    runs = {r.run: r.counts for r in query.list_runs(repo)}
    assert runs == {RUN: {"dropped": 1}, RUN2: {"dropped": 1}}
    assert json.loads(git(repo_path, "show", f"refs/uet/ledger/{RUN}:plan.json")) == {}
    assert os.path.exists(repo_path / ".git" / "uet" / "locks")
