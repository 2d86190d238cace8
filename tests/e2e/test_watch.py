"""Watching a run from another process: `uet status` while `uet run` works (the run is live,
what each worker runs and at which stage, the ETA), `uet status --watch` following it to the
end, and a killed run's live file seen as stale. The run is a process of its own (it must be
live while the test looks); its tools sleep about a second."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess as sp
import time
from pathlib import Path

from tests.cli.test_json import conforms, section
from tests.e2e.helpers import run, setup_repo
from tests.e2e.started import StartedUet, read_terminal, start_uet


def _start_run(repo: Path, *args: str) -> StartedUet:
    return start_uet(repo, "run", "--quiet", *args)


def _wait_for(repo: Path, text: str, proc: StartedUet, timeout: float = 20) -> str:
    """`uet status` until its output holds ``text``."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = run(repo, "status").stdout
        if text in out:
            return out
        assert proc.poll() is None, f"the run ended first: {proc.output()}"
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never shown; last:\n{out}")


def test_status_shows_a_live_run_and_watch_follows_it_to_the_end(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "slow": {"command": "sleep 1.5; echo s > s.txt", "estimate": 2},
        "after": {"depends_on": ["slow"], "command": "echo a > a.txt", "estimate": 1},
    })
    proc = _start_run(repo, "-j", "1")
    try:
        out = _wait_for(repo, "tool on worker 0", proc)
        assert "live: pid " in out and "elapsed" in out and "eta ~" in out
        line = next(x for x in out.splitlines() if x.startswith("slow "))
        assert line.split()[1] == "running"  # a display state: the ledger says nothing yet
        assert "1 running, 1 pending" in out
        data = json.loads(run(repo, "status", "--json").stdout)
        conforms(data, section("status"))  # live and running included, as docs/json.md says
        running = next(w["running"] for w in data["workstreams"] if w["running"])
        assert running["since"].endswith("Z") and "T" in running["since"]  # ISO, not epoch
        assert data["live"]["alive"] and data["live"]["live"] and data["live"]["pid"] == proc.pid
        assert data["live"]["eta_seconds"] is not None
        slow = next(w for w in data["workstreams"] if w["ws"] == "slow")
        assert slow["state"] == "pending" and slow["running"]["worker"] == 0
        assert slow["running"]["stage"] in ("tool", "normalise", "acceptance")
        assert run(repo, "runs").stdout.splitlines()[1].split()[-2] == "live"
        assert json.loads(run(repo, "runs", "--json").stdout)[0]["live"] is True
        watched = run(repo, "status", "--watch", "--interval", "0.1")
        assert watched.returncode == 0
        lines = watched.stdout.splitlines()
        assert any(x.endswith("slow: running (tool on worker 0)") for x in lines), lines
        assert any(x.endswith("after: committed") for x in lines), lines
        assert lines[-1] == "2 workstreams: 2 committed"
        assert proc.wait(timeout=30) == 0
    finally:
        proc.close()
    after = run(repo, "status").stdout
    assert "live:" not in after and "running" not in after and "(landed, finished)" in after
    assert not list((repo / ".git" / "uet" / "live").glob("*.json"))


def test_a_killed_run_is_not_live(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "slow": {"command": "sleep 2; echo s > s.txt"},
    })
    proc = _start_run(repo)
    try:
        _wait_for(repo, "tool on worker 0", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.close()
    out = run(repo, "status").stdout
    assert f"not running: its process (pid {proc.pid}) is gone" in out
    assert "uet resume" in out and "running" not in out.split("\n", 2)[2]
    data = json.loads(run(repo, "status", "--json").stdout)
    assert data["live"]["alive"] is False and data["live"]["live"] is False
    assert all(w["running"] is None for w in data["workstreams"])
    started = time.monotonic()
    watched = run(repo, "status", "--watch", "--interval", "0.1")
    assert watched.returncode == 0 and time.monotonic() - started < 5
    assert "slow: pending" in watched.stdout
    looks = run(repo, "status", "--watch", "--json", "--interval", "0.1").stdout.splitlines()
    assert len(looks) == 1 and json.loads(looks[0])["live"]["alive"] is False
    # gc removes the dead file; status still says the run stopped half way, from the ledger
    assert "stale live-state file" in run(repo, "gc").stdout
    out = run(repo, "status").stdout
    assert "no process runs it and it did not finish; `uet resume" in out, out


def test_watch_on_a_terminal_redraws_and_ends_with_the_run(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "slow": {"command": "sleep 0.8; echo s > s.txt"},
        "after": {"depends_on": ["slow"], "command": "sleep 0.4; echo a > a.txt"},
    })
    proc = _start_run(repo, "-j", "1")
    master, slave = pty.openpty()
    watcher: StartedUet | None = None
    ledgers = repo / ".git" / "refs" / "uet" / "ledger"
    try:
        # The watcher starts as soon as the run's ledger exists (no `uet status` polling: the
        # watcher's own start-up is the wait), so it sees the run live.
        deadline = time.monotonic() + 20
        while not (ledgers.is_dir() and any(ledgers.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, proc.output()
            time.sleep(0.02)
        watcher = start_uet(repo, "status", "--watch", "--interval", "0.1",
                            env={"TERM": "xterm"}, terminal=slave)
        os.close(slave)
        slave = -1
        screen = read_terminal(master, watcher, timeout=30)
        assert watcher.wait(timeout=10) == 0
        assert proc.wait(timeout=30) == 0
    finally:
        for p in (proc, watcher):
            if p is not None:
                p.close()
        if slave >= 0:
            os.close(slave)
        os.close(master)
    text = screen.decode(errors="replace")
    frames = [f for f in text.split("\x1b[H\x1b[J") if f.strip()]
    assert len(frames) >= 2, text  # it redrew: the screen is cleared before each frame
    # The first frame is of the live run (the watcher may start after the tool ended, on a
    # busy machine: "after" is then still pending), the last one of the finished run.
    assert "live: pid" in frames[0] and "2 workstreams: 2 committed" not in frames[0], frames[0]
    last = frames[-1]
    assert "2 workstreams: 2 committed" in last and "live:" not in last, last
    assert "(landed, finished)" in last


def test_gc_removes_a_dead_runs_live_file_and_status_ignores_it(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    assert run(repo, "run", "-q").returncode == 0
    run_id = json.loads(run(repo, "status", "--json").stdout)["run"]
    dead = sp.Popen(["true"])
    dead.wait()
    live_dir = repo / ".git" / "uet" / "live"
    live_dir.mkdir(parents=True, exist_ok=True)
    stale = live_dir / f"{run_id}.json"
    stale.write_text(json.dumps({
        "run": run_id, "pid": dead.pid, "pid_start": 1, "started": time.time() - 5,
        "updated": time.time(), "jobs": 1, "finished": False,
        "running": [{"ws": "a", "worker": 0, "stage": "tool", "since": time.time()}]}))
    data = json.loads(run(repo, "status", "--json").stdout)
    assert data["live"]["alive"] is False and all(w["running"] is None
                                                  for w in data["workstreams"])
    assert "running" not in run(repo, "status").stdout
    dry = run(repo, "gc", "--dry-run", "--json")
    assert json.loads(dry.stdout)["live_files"] == [f"{run_id} (pid {dead.pid})"]
    assert stale.exists()
    out = run(repo, "gc")
    assert out.returncode == 0, out.stderr
    assert f"removed the stale live-state file of run {run_id} (pid {dead.pid})" in out.stdout
    assert not stale.exists()
    assert json.loads(run(repo, "status", "--json").stdout)["live"] is None
    assert "not running" not in run(repo, "status").stdout  # it finished: nothing to say
