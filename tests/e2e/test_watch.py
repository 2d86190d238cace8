"""Watching a run from another process: `uet status` while `uet run` works (the run is live,
what each worker runs and at which stage, the ETA), `uet status --watch` following it to the
end, and a killed run's live file seen as stale. The run is a process of its own (it must be
live while the test looks); its tools sleep about a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess as sp
import sys
import time
from pathlib import Path

from tests.e2e.helpers import run, setup_repo


def _start_run(repo: Path, *args: str) -> sp.Popen[str]:
    env = {**os.environ, "UET_RETRY_BACKOFF": "0.05"}
    return sp.Popen([sys.executable, "-m", "uet_git", "run", "--quiet", *args], cwd=repo,
                    env=env, stdout=sp.PIPE, stderr=sp.PIPE, text=True, stdin=sp.DEVNULL)


def _wait_for(repo: Path, text: str, proc: sp.Popen[str], timeout: float = 20) -> str:
    """`uet status` until its output holds ``text``."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = run(repo, "status").stdout
        if text in out:
            return out
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
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
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
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
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
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
