"""The /proc sweep: daemons that clear their environment and leave the session are killed at
the tool's end; processes working in a directory are found; a killed run's tools are stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import start_forked, wait_forked
from uet_git.workers import procfs
from uet_git.workers.process import run_process


def _alive(pid: int) -> bool:
    p = procfs.read_stat(pid)
    return p is not None and p.state != "Z"


def _run(cwd: Path, cmd: str, logs: Path, **kw):
    logs.mkdir(parents=True, exist_ok=True)
    return run_process(cmd, cwd=cwd, env=kw.pop("env", {}), timeout=20,
                       stdout_path=logs / "out", stderr_path=logs / "err", **kw)


def _wait_file(path: Path, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()) and time.monotonic() < end:
        time.sleep(0.01)


def test_setsid_env_i_daemon_in_the_worktree_dies_with_the_tool(tmp_path: Path) -> None:
    wt, logs = tmp_path / "wt", tmp_path / "logs"
    wt.mkdir()
    pidfile = tmp_path / "daemon.pid"
    # Cleared environment (no UET_PROC_TOKEN), own session, parent gone at once: re-parented
    # to us outside every group the sweep knew, still working in the worktree.
    script = (f"setsid env -i sh -c 'echo $$ > {pidfile}; sleep 0.3; echo x > {wt}/leak; "
              f"sleep 30' & sleep 0.05; while [ ! -s {pidfile} ]; do sleep 0.01; done")
    r = _run(wt, script, logs)
    assert r.returncode == 0, (logs / "err").read_text()
    pid = int(pidfile.read_text())
    assert not _alive(pid)
    time.sleep(0.5)
    assert not (wt / "leak").exists()


def test_daemon_that_left_the_directory_is_found_once_seen(tmp_path: Path) -> None:
    """Not in the worktree any more, no token, own session: the tool's tree was sampled while it
    ran, so the daemon is known to be the tool's."""
    wt, logs, outside = tmp_path / "wt", tmp_path / "logs", tmp_path / "outside"
    wt.mkdir()
    outside.mkdir()
    pidfile = tmp_path / "daemon.pid"
    script = (f"setsid env -i sh -c 'cd {outside}; echo $$ > {pidfile}; sleep 30' & "
              f"while [ ! -s {pidfile} ]; do sleep 0.01; done; sleep 0.8")
    r = _run(wt, script, logs)
    assert r.returncode == 0
    assert not _alive(int(pidfile.read_text()))


def test_another_tools_orphan_survives_a_tool_that_ends(tmp_path: Path) -> None:
    """Tool B is still running; its double-forked daemon lives elsewhere; tool A's end must not
    take it."""
    a, b, logs = tmp_path / "a", tmp_path / "b", tmp_path / "logs"
    a.mkdir()
    b.mkdir()
    pidfile = tmp_path / "b-daemon.pid"
    stop = tmp_path / "stop"
    b_script = (f"sh -c 'setsid sh -c \"echo \\$\\$ > {pidfile}; sleep 30\" &' ; "
                f"while [ ! -e {stop} ]; do sleep 0.02; done")
    results = {}
    t = threading.Thread(target=lambda: results.update(b=_run(b, b_script, logs / "b")))
    t.start()
    _wait_file(pidfile)
    time.sleep(0.3)  # B's tree sampled: the daemon is B's
    daemon = int(pidfile.read_text())
    assert _run(a, "true", logs / "a").returncode == 0
    assert _alive(daemon)
    stop.touch()
    t.join(20)
    assert results["b"].returncode == 0
    assert not _alive(daemon)


def test_processes_under_finds_cwd_and_open_files(tmp_path: Path) -> None:
    d, other = tmp_path / "d", tmp_path / "other"
    (d / "sub").mkdir(parents=True)
    other.mkdir()
    (d / "held").write_text("x")
    by_cwd = subprocess.Popen(["sleep", "30"], cwd=d / "sub")
    holder = subprocess.Popen(["sh", "-c", f"exec 3<{d}/held; exec sleep 30"], cwd=other)
    elsewhere = subprocess.Popen(["sleep", "30"], cwd=other)
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            found = procfs.processes_under(d)
            if {by_cwd.pid, holder.pid} <= set(found):
                break
            time.sleep(0.02)
        assert {by_cwd.pid, holder.pid} <= set(found)
        assert elsewhere.pid not in found and os.getpid() not in found
        assert elsewhere.pid in procfs.processes_under(other)
    finally:
        for p in (by_cwd, holder, elsewhere):
            p.kill()
            p.wait()
    assert procfs.processes_under(d) == []


def test_stop_stale_kills_a_runs_leftovers_only(tmp_path: Path) -> None:
    env = {**os.environ, "UET_RUN": "20261201-run-a"}
    mine = subprocess.Popen(["sh", "-c", "sleep 30"], env=env, start_new_session=True)
    other = subprocess.Popen(["sh", "-c", "sleep 30"],
                             env={**os.environ, "UET_RUN": "20261201-run-b"})
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end:
            if procfs.has_token(mine.pid, b"UET_RUN=20261201-run-a"):
                break
            time.sleep(0.01)
        stopped = procfs.stop_stale("20261201-run-a", grace=1.0)
        assert mine.pid in stopped and other.pid not in stopped
        assert mine.wait(5) is not None and other.poll() is None
    finally:
        for p in (mine, other):
            p.kill()
            p.wait()


def test_stop_stale_kills_a_leftover_that_ignores_sigterm(tmp_path: Path) -> None:
    """A tool's leftover that traps SIGTERM (and whose child outlives the shell) is still gone
    after stop_stale: the KILL round signals what the TERM round's last look left."""
    env = {**os.environ, "UET_RUN": "20261201-run-t"}
    ready = tmp_path / "ready"
    stubborn = subprocess.Popen(
        ["sh", "-c", f"trap '' TERM; sleep 30 & touch {ready}; wait"], env=env,
        start_new_session=True)
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end and not ready.exists():
            time.sleep(0.01)
        assert ready.exists()
        stopped = procfs.stop_stale("20261201-run-t", grace=0.3)
        assert stubborn.pid in stopped
        assert stubborn.wait(5) == -signal.SIGKILL
        end = time.monotonic() + 5
        while time.monotonic() < end and procfs.stop_stale("20261201-run-t", grace=0.3):
            time.sleep(0.05)
        assert procfs.stop_stale("20261201-run-t", grace=0.3) == []
    finally:
        stubborn.kill()
        stubborn.wait()


def test_a_forked_child_becomes_a_subreaper_of_its_own(tmp_path: Path) -> None:
    """The kernel's subreaper flag is not inherited across fork: a child forked from a
    subreaper that asks to be one is made one, so its tools' orphans come to it (found by
    my_descendants), not to its parent."""
    assert procfs.become_subreaper()
    pidfile = tmp_path / "orphan.pid"

    def child() -> int:
        assert procfs.become_subreaper()
        subprocess.run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}"], check=True)
        orphan = int(pidfile.read_text())
        try:
            p = procfs.read_stat(orphan)
            found = procfs.my_descendants() or {}
            return 0 if p is not None and p.ppid == os.getpid() and orphan in found else 3
        finally:
            os.kill(orphan, signal.SIGKILL)

    pid = start_forked(child)
    assert wait_forked(pid, 20) == 0
