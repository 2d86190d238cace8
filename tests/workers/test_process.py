"""run_process: exit codes, closed stdin, missing executables, and no process left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from uet_git.workers.process import read_tail, run_process


def _run(tmp_path: Path, cmd, **kw):
    kw.setdefault("timeout", 20)
    return run_process(cmd, cwd=tmp_path, env=kw.pop("env", {}),
                       stdout_path=tmp_path / "out.log", stderr_path=tmp_path / "err.log", **kw)


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def _session_members(sid: int) -> list[int]:
    found = []
    for name in Path("/proc").iterdir():
        if not name.name.isdigit():
            continue
        try:
            stat = (name / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if (int(fields[3]) == sid or int(fields[2]) == sid) and fields[0] != "Z":
            found.append(int(name.name))
    return found


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def test_exit_codes_and_output(tmp_path: Path) -> None:
    r = _run(tmp_path, "echo hello; echo oops >&2; exit 3")
    assert (r.returncode, r.timed_out, r.cancelled, r.error) == (3, False, False, None)
    assert (tmp_path / "out.log").read_bytes() == b"hello\n"
    assert (tmp_path / "err.log").read_bytes() == b"oops\n"
    assert _run(tmp_path, ["false"]).returncode == 1
    ok = _run(tmp_path, ["sh", "-c", "pwd; echo $MYVAR"], env={"MYVAR": "v1"})
    assert ok.returncode == 0 and ok.ok
    assert (tmp_path / "out.log").read_text().split() == [str(tmp_path), "v1"]


def test_stdin_is_closed_or_a_file(tmp_path: Path) -> None:
    t0 = time.monotonic()
    r = _run(tmp_path, "cat; echo done-$?", timeout=10)
    assert r.returncode == 0 and time.monotonic() - t0 < 5
    assert (tmp_path / "out.log").read_text() == "done-0\n"
    (tmp_path / "prompt.txt").write_text("the prompt\n")
    r = _run(tmp_path, ["cat"], stdin_path=tmp_path / "prompt.txt")
    assert r.returncode == 0
    assert (tmp_path / "out.log").read_text() == "the prompt\n"


def test_missing_executable_is_an_error_not_an_exception(tmp_path: Path) -> None:
    r = _run(tmp_path, ["uet-no-such-tool-xyz", "--flag"])
    assert r.returncode is None and r.error == "executable not found: uet-no-such-tool-xyz"
    assert not r.ok
    r = _run(tmp_path, "uet-no-such-tool-xyz --flag")
    assert r.returncode == 127 and r.error and "not found" in r.error
    r = run_process(["true"], cwd=tmp_path / "missing", env={}, timeout=5,
                    stdout_path=tmp_path / "o", stderr_path=tmp_path / "e")
    assert r.returncode is None and r.error and "working directory" in r.error


def test_timeout_kills_children_grandchildren_and_setsid_escapees(tmp_path: Path) -> None:
    script = (
        "echo $$ > leader; "
        "sleep 100 & echo $! >> pids; "
        "sh -c 'sleep 100 & echo $! >> pids; sleep 100' & echo $! >> pids; "
        # a double fork into a new session: its parent exits, so only the token finds it
        "sh -c \"setsid sh -c 'echo \\$\\$ >> escaped; sleep 100 & echo \\$! >> escaped; "
        "wait' &\"; "
        "while [ $(wc -l < escaped 2>/dev/null || echo 0) -lt 2 ]; do sleep 0.01; done; "
        "sleep 100"
    )
    t0 = time.monotonic()
    r = _run(tmp_path, script, timeout=1.0, grace=1.0)
    took = time.monotonic() - t0
    assert r.timed_out and not r.cancelled and r.returncode is not None
    assert r.error == "timed out after 1 s"
    assert took < 5, took
    leader = _pids(tmp_path / "leader")[0]
    pids = _pids(tmp_path / "pids")
    escaped = _pids(tmp_path / "escaped")
    assert len(pids) == 3 and len(escaped) == 2
    assert _session_members(leader) == []
    survivors = [p for p in [leader, *pids, *escaped] if _alive(p)]
    assert survivors == []
    # The escapees were re-parented to us (the subreaper) and reaped: not even zombies remain.
    deadline = time.monotonic() + 2
    while any(Path(f"/proc/{p}").exists() for p in escaped) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in escaped if Path(f"/proc/{p}").exists()] == []


def test_other_subprocesses_keep_their_exit_status(tmp_path: Path) -> None:
    """Reaping adopted orphans must never steal the status of another thread's subprocess,
    even one in its own session (like the ledger's git update-ref)."""
    import subprocess
    codes: list[int] = []
    stop = threading.Event()

    def others() -> None:
        while not stop.is_set():
            codes.append(subprocess.run(["sh", "-c", "exit 3"], start_new_session=True).returncode)

    t = threading.Thread(target=others)
    t.start()
    try:
        for _ in range(5):
            _run(tmp_path, "sleep 0.05 & setsid sleep 0.05 & exit 0", grace=0.2)
    finally:
        stop.set()
        t.join()
    assert codes and set(codes) == {3}


def test_term_ignored_escalates_to_kill(tmp_path: Path) -> None:
    script = "trap '' TERM; echo $$ > leader; while :; do sleep 0.05; done"
    t0 = time.monotonic()
    r = _run(tmp_path, script, timeout=0.5, grace=0.5)
    assert r.timed_out and r.returncode == -9
    assert time.monotonic() - t0 < 5
    assert _session_members(_pids(tmp_path / "leader")[0]) == []


def test_background_child_does_not_outlive_a_normal_exit(tmp_path: Path) -> None:
    r = _run(tmp_path, "sleep 100 & echo $! > bg; exit 0", grace=0.5)
    assert r.returncode == 0 and not r.timed_out
    assert not _alive(_pids(tmp_path / "bg")[0])


def test_cancel_kills_the_group(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    t0 = time.monotonic()
    r = _run(tmp_path, "echo $$ > leader; sleep 100 & sleep 100", timeout=60, cancel=cancel,
             grace=1.0)
    assert r.cancelled and not r.timed_out and r.error == "cancelled"
    assert time.monotonic() - t0 < 5
    assert _session_members(_pids(tmp_path / "leader")[0]) == []
    # Already cancelled (Ctrl-C came first): nothing starts.
    r = _run(tmp_path, "echo started > started", cancel=cancel)
    assert r.cancelled and r.returncode is None and not (tmp_path / "started").exists()


def test_parallel_tools_do_not_kill_each_other(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    results = {}

    def slow() -> None:
        results["slow"] = run_process("sleep 1; echo finished", cwd=a, env={}, timeout=20,
                                      stdout_path=a / "o", stderr_path=a / "e")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.1)
    fast = run_process("sleep 100", cwd=b, env={}, timeout=0.3, grace=0.3,
                       stdout_path=b / "o", stderr_path=b / "e")
    t.join()
    assert fast.timed_out
    assert results["slow"].returncode == 0 and (a / "o").read_text() == "finished\n"


def test_read_tail_is_bounded(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"abc")
    assert read_tail(small, 100) == b"abc"
    assert read_tail(tmp_path / "missing", 100) == b""
    big = tmp_path / "big"
    big.write_bytes(b"H" * 5000 + b"M" * 90000 + b"T" * 5000)
    out = read_tail(big, 4000)
    assert len(out) < 4100
    assert out.startswith(b"H" * 1000) and out.endswith(b"T" * 3000)
    assert b"bytes omitted" in out


def test_git_env_is_sanitised(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GIT_DIR", "/somewhere/else/.git")
    monkeypatch.setenv("GIT_INDEX_FILE", "/somewhere/index")
    # The tests' global config turns auto maintenance off: what the tool sees is uet's alone.
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    script = ('echo "dir=${GIT_DIR-unset} idx=${GIT_INDEX_FILE-unset}"; '
              "git config --get gc.auto; git config --get maintenance.auto; "
              "git config --get user.name")
    r = _run(tmp_path, script, env={"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "user.name",
                                    "GIT_CONFIG_VALUE_0": "Kept"})
    assert r.returncode == 0
    assert (tmp_path / "out.log").read_text().split() == [
        "dir=unset", "idx=unset", "0", "false", "Kept"]


def test_descendant_walk_finds_what_the_full_proc_scan_finds(tmp_path: Path) -> None:
    """The sweep walks only our own process tree (we are a subreaper, so a setsid'd double fork
    is re-parented below us); it must find exactly the tool's processes a scan of all /proc
    finds, escapees included."""
    import os
    import subprocess

    from uet_git.workers import procfs as P

    assert P.become_subreaper()
    token = "t" + os.urandom(8).hex()
    script = ("sleep 100 & "
              "sh -c \"setsid sh -c 'echo \\$\\$ >> escaped; sleep 100 & wait' &\"; "
              "while [ ! -s escaped ]; do sleep 0.01; done; sleep 100")
    proc = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, start_new_session=True,
                            env={**os.environ, P.TOKEN_VAR: token})
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "escaped").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        mine = P.my_descendants()
        assert mine is not None and proc.pid in mine
        walked = P.ToolWatch(proc.pid, token).find()
        real_all = P.my_descendants
        try:
            P.my_descendants = lambda: None  # type: ignore[assignment]
            scanned = P.ToolWatch(proc.pid, token).find()
        finally:
            P.my_descendants = real_all  # type: ignore[assignment]
        escaped = _pids(tmp_path / "escaped")[0]
        assert escaped in {p.pid for p in walked}
        assert {p.pid for p in walked} == {p.pid for p in scanned}
        assert len(walked) >= 5  # sh, sleep, setsid'd sh, its sleep (+ the waiting shell)
    finally:
        P.kill_tool(P.ToolWatch(proc.pid, token), grace=0.5, poll=proc.poll)
        proc.wait()
