"""The landing journal without the CLI: who recorded an intent and whether that process is gone,
and an intent left open (a process that died right after recording it) undone by recovery."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.commands.landkit import fsck_clean, head_of, open_land, two_committed
from tests.conftest import git
from uet_git.commands.journal import INTENT, open_intent, owner_gone, recover_landing
from uet_git.commands.land import land_events
from uet_git.ledger.writer import Ledger


def start_time(pid: int) -> str:
    """What the journal records as ``Uet-Pid-Start``: the process's start time in clock ticks
    since boot, ``/proc/PID/stat`` field 22 (read here on its own, as the format's check)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2:].split()[19]


def owner(pid: int, **extra: str) -> dict[str, str]:
    t = {"Uet-Pid": str(pid), "Uet-Host": socket.gethostname(), "Uet-Pid-Start": start_time(pid)}
    return {**t, **extra}


def test_owner_gone_tells_a_live_process_from_a_dead_or_reused_pid() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = owner(proc.pid)
        assert not owner_gone(alive)
        # The same pid, started at another time: a reused pid, the recorder is gone.
        assert owner_gone({**alive, "Uet-Pid-Start": "1"})
        assert not owner_gone({**alive, "Uet-Host": "another-host.invalid"})
    finally:
        proc.kill()
        proc.wait()
    assert owner_gone(alive)
    assert owner_gone(owner(os.getpid()))  # this process is not inside a move now
    assert not owner_gone({"Uet-Host": socket.gethostname()})  # no pid: unknown, kept


def test_an_intent_left_open_is_undone_then_land_lands(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "src/c.txt").write_text("the user's edit\n")
    with Ledger.open(b.repo, b.run) as ledger:
        assert recover_landing(b.repo, ledger) is None
    with Ledger.open(b.repo, b.run) as ledger:
        # What a process killed right after recording the intent leaves: the intent alone.
        ledger.event(INTENT["land"], "main: about to land", trailers={
            "Uet-Branch": "main", "Uet-Previous": b.base, "Uet-Landed": b.tip,
            **owner(os.getpid())})
        intent = open_intent(b.repo, b.run)
        assert intent is not None and (intent.previous, intent.new) == (b.base, b.tip)
        did = recover_landing(b.repo, ledger)
        assert did is not None and did.startswith("undid an interrupted landing")
        assert open_intent(b.repo, b.run) is None
        assert recover_landing(b.repo, ledger) is None
    assert head_of(b.path) == b.base
    subjects = git(b.path, "log", "-2", "--format=%s", f"refs/uet/ledger/{b.run}").split("\n")
    assert subjects == ["run: land-aborted", "run: land-intent"]
    res = open_land(b)
    assert res.landed and "interrupted" not in res.message
    assert [(e.previous, e.landed) for e in land_events(b.repo, b.run)] == [(b.base, b.tip)]
    assert (b.path / "src/c.txt").read_text() == "the user's edit\n"
    fsck_clean(b.path)
