"""Is a run live, and what is it doing right now: the reader of the live-state file.

The process running a run (``uet run``, ``uet resume``) keeps ``<common git dir>/uet/live/
RUN.json`` (written by ``engine/live.py``: atomic replace, at most every half second, removed
when the run finishes or is interrupted). It holds what the ledger does not: which workstream
each worker runs now and at which stage. Fields (times: seconds since the epoch)::

    {"run": RUN, "pid": 1234, "pid_start": 567890, "started": 1764585600.1,
     "updated": 1764585612.3, "jobs": 4, "finished": false,
     "running": [{"ws": "a", "worker": 0, "stage": "tool", "since": 1764585601.0,
                  "ws_since": 1764585600.5}]}

``worker`` -1 is the integrator, -2... the verification queue's verifiers. A file whose process
is gone (killed, or its pid reused: ``pid_start`` is the process start time from
``/proc/PID/stat``) is stale: the run is not live and its ``running`` list means nothing.
Readers never lock and never write.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uet_git.gitrepo import Repo
from uet_git.ledger.lock import lock_path


def live_path(repo: Repo, run: str) -> Path:
    return repo.uet_dir / "live" / f"{run}.json"


def proc_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Process ``pid`` exists (and, when ``start`` is given, is the one that started then)."""
    if pid <= 0:
        return False
    now = proc_start(pid)
    if now is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return start is None  # no /proc: cannot tell a reused pid
    return start is None or now == start


@dataclass
class Running:
    ws: str
    worker: int
    stage: str
    since: float  # the stage started
    ws_since: float  # the workstream's attempt started on this worker

    def to_dict(self, now: float) -> dict[str, Any]:
        # ISO 8601 like every time uet prints (the file keeps epoch seconds).
        since = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="milliseconds")
        return {"ws": self.ws, "worker": self.worker, "stage": self.stage,
                "since": since.replace("+00:00", "Z"),
                "elapsed": round(max(0.0, now - self.ws_since), 3)}


@dataclass
class Live:
    """What ``RUN.json`` says, and whether its process is alive."""

    run: str
    pid: int
    alive: bool
    started: float
    updated: float
    jobs: int
    finished: bool
    running: list[Running] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.alive and not self.finished


def read_live(repo: Repo, run: str) -> Live | None:
    """The live-state file of ``run`` (None: absent or unreadable, so not live)."""
    try:
        data = json.loads(live_path(repo, run).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        pid = int(data["pid"])
        start = data.get("pid_start")
        running = [Running(str(r["ws"]), int(r["worker"]), str(r.get("stage") or ""),
                           float(r.get("since") or 0.0),
                           float(r.get("ws_since") or r.get("since") or 0.0))
                   for r in data.get("running") or []]
        return Live(run, pid, pid_alive(pid, int(start) if start is not None else None),
                    float(data.get("started") or 0.0), float(data.get("updated") or 0.0),
                    int(data.get("jobs") or 0), bool(data.get("finished")), running)
    except (KeyError, TypeError, ValueError):
        return None


def writer_pid(repo: Repo, run: str) -> int | None:
    """The pid a process holding ``run``'s writer lock recorded (None: no writer, or dead)."""
    owner = lock_path(repo, run).with_suffix(".owner")
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(owner.read_text().split()[0])
        if pid_alive(pid):
            return pid
    return None


def eta_seconds(plan: Mapping[str, Any] | None, states: Mapping[str, str],
                running: Mapping[str, float], jobs: int) -> float | None:
    """Seconds the workers still need, from the recorded plan's weights (estimates, else
    earlier runs' durations): ``max(longest chain of unfinished work, unfinished work /
    jobs)``, a running workstream counting its weight minus its ``running`` seconds. Pending
    (``states`` says ``pending``) and running workstreams are unfinished. None when the plan
    has no weights worth the name (no estimate, no earlier run: every weight the default)."""
    if not plan:
        return None
    nodes = {n["id"]: n for n in plan.get("nodes") or [] if isinstance(n, dict) and "id" in n}
    if not any(n.get("estimate") is not None or n.get("weight") not in (None, 1, 1.0)
               for n in nodes.values()):
        return None
    selected = set(plan.get("selected") or nodes)
    left: dict[str, float] = {}
    for ws, node in nodes.items():
        if ws not in selected:
            continue
        weight = float(node.get("weight") or 0.0)
        if ws in running:
            left[ws] = max(0.0, weight - running[ws])
        elif states.get(ws, "pending") == "pending":
            left[ws] = weight
    if not left:
        return 0.0
    after: dict[str, list[str]] = {ws: [] for ws in nodes}
    for ws, node in nodes.items():
        for dep in node.get("depends_on") or []:
            after.setdefault(dep, []).append(ws)
    chain: dict[str, float] = {}
    for ws in reversed(list(plan.get("order") or nodes)):
        chain[ws] = left.get(ws, 0.0) + max((chain.get(d, 0.0) for d in after.get(ws, [])),
                                            default=0.0)
    return max(max(chain.values(), default=0.0), sum(left.values()) / max(jobs, 1))
