"""A run lock that outlives its dead writer (a process forked at the moment of a kill -9 holds
a copy of the lock's descriptor): ``uet resume`` and ``uet rollback`` take it over; a live
writer's lock is never taken."""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import Forked, start_forked, wait_forked
from tests.e2e.helpers import last_run, run, run_ok, setup_repo, states
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.lock import lock_path


def hold_flock(path: Path) -> None:
    """Holds an flock on ``path`` until killed, as a forked child that inherited the writer's
    descriptor would (run in a forked child)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    while True:
        signal.pause()


def dead_pid() -> int:
    pid = start_forked(lambda: None)
    assert wait_forked(pid, 30) == 0
    return pid


@contextmanager
def lock_held_by_a_stray(repo: Path, run_id: str, owner: int) -> Iterator[None]:
    path = lock_path(Repo.open(repo), run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Forked(lambda: hold_flock(path))
    try:
        assert holder.stdout.readline().strip() == "held"
        path.with_suffix(".owner").write_text(f"{owner}\n")
        yield
    finally:
        holder.close()


def crashed_run(tmp_path: Path) -> tuple[Path, str]:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"command": "echo b > b.txt", "depends_on": ["a"]}})
    proc = run(repo, "run", env={"UET_TEST_CRASH_AT": "a:created"}, forked=True)
    assert proc.returncode == 137, proc.stdout + proc.stderr
    return repo, last_run(repo)


def test_resume_takes_over_the_lock_of_a_dead_writer(tmp_path: Path) -> None:
    repo, run_id = crashed_run(tmp_path)
    with lock_held_by_a_stray(repo, run_id, dead_pid()):
        run_ok(repo, "resume", run_id)
    assert states(repo, run_id) == {"a": "committed", "b": "committed"}


def test_rollback_takes_over_the_lock_of_a_dead_writer(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    run_ok(repo, "run")
    run_id = last_run(repo)
    with lock_held_by_a_stray(repo, run_id, dead_pid()):
        run_ok(repo, "rollback", run_id)
    assert states(repo, run_id) == {"a": "rolled-back"}


def test_the_lock_of_a_live_writer_is_not_taken(tmp_path: Path) -> None:
    repo, run_id = crashed_run(tmp_path)
    before = states(repo, run_id)  # where the crash left a (its first transaction's last state)
    assert set(before) == {"a"}
    with lock_held_by_a_stray(repo, run_id, os.getpid()):
        proc = run(repo, "resume", run_id)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"pid {os.getpid()}" in proc.stderr
    assert states(repo, run_id) == before
