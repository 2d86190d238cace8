"""The pool's sweep (``processes_under``) reads every process's cwd, root and executable, but
open files only of what may be a tool's leftover: a daemon that cleared its environment, left
its session and lives outside the directory is still found; a process in a live session that
no tool started is not read."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uet_git.workers import procfs
from uet_git.workers.procfs import Proc, could_be_a_tools

# Pids that cannot exist (above any pid_max): their environment does not read.
BASE = 10**9


def _p(pid: int, ppid: int, sid: int) -> Proc:
    return Proc(BASE + pid, ppid if ppid <= 1 else BASE + ppid, 0, BASE + sid, "S", 0)


def test_what_may_be_a_tools_leftover() -> None:
    shell = _p(10, 5, 10)  # a login shell: session leader, parent some terminal server
    job = _p(11, 10, 10)  # its job: a test runner with hundreds of open files
    worker = _p(12, 11, 10)
    daemon = _p(20, 1, 20)  # setsid, re-parented to init
    daemon_child = _p(21, 20, 20)  # what the daemon started, environment cleared
    orphan = _p(30, 1, 99)  # double fork: its session leader is gone
    under_dead = _p(31, 12, 98)
    mine = _p(40, 12, 10)
    procs = {p.pid: p for p in (_p(5, 1, 5), shell, job, worker, daemon, daemon_child, orphan,
                                under_dead, mine)}
    below = {mine.pid}
    cache: dict[int, bool] = {}
    found = {p.pid - BASE for p in procs.values()
             if could_be_a_tools(p, procs.get, below.__contains__, cache)}
    assert found == {5, 10, 20, 21, 30, 31, 40}
    for p in (job, worker):
        assert not could_be_a_tools(p, procs.get, below.__contains__)


def _wait_pid(pidfile: Path) -> int:
    end = time.monotonic() + 5
    while time.monotonic() < end:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError("the daemon did not start")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    end = time.monotonic() + 5
    while procfs.read_stat(pid) is not None and procfs.read_stat(pid).state != "Z" \
            and time.monotonic() < end:
        time.sleep(0.01)


DAEMON = """
import os, sys, time
os.chdir("/")
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(int(sys.argv[3]))]
held = os.open(sys.argv[1], os.O_RDONLY)
open(sys.argv[2], "w").write(str(os.getpid()))
time.sleep(30)
"""


@pytest.mark.parametrize("extra_fds", [0, 40])
def test_a_setsid_env_i_daemon_holding_a_file_there_is_found(tmp_path: Path,
                                                             extra_fds: int) -> None:
    """With few open files or many (then it is read because it may be a tool's: a session
    leader, re-parented to us as a subreaper or to init)."""
    d = tmp_path / "slot"
    d.mkdir()
    (d / "held").write_text("x")
    pidfile = tmp_path / "pid"
    (tmp_path / "daemon.py").write_text(DAEMON)
    # The launcher exits at once: the daemon is re-parented.
    subprocess.run(["sh", "-c", f"setsid env -i {sys.executable} {tmp_path}/daemon.py "
                    f"{d}/held {pidfile} {extra_fds} &"], check=True)
    pid = _wait_pid(pidfile)
    try:
        end = time.monotonic() + 5
        while pid not in procfs.processes_under(d) and time.monotonic() < end:
            time.sleep(0.02)
        assert pid in procfs.processes_under(d)
    finally:
        _kill(pid)


def test_a_program_run_from_the_directory_is_found(tmp_path: Path) -> None:
    d = tmp_path / "slot"
    d.mkdir()
    sleep = shutil.which("sleep")
    assert sleep is not None
    shutil.copy(sleep, d / "daemon")
    proc = subprocess.Popen([str(d / "daemon"), "30"], cwd="/", stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
    try:
        end = time.monotonic() + 5
        while proc.pid not in procfs.processes_under(d) and time.monotonic() < end:
            time.sleep(0.02)
        assert proc.pid in procfs.processes_under(d)
    finally:
        proc.kill()
        proc.wait()
