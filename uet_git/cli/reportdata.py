"""What ``uet report`` shows, gathered from the ledger alone (``gather``): the run's counts and
bounds, each step's timing, the plan's levels, and per workstream its history, evidence and
diff. ``cli/htmlreport.py`` renders it; ``cli/report.py`` is the command."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from uet_git.cli.status import landed_flag
from uet_git.engine.live import TIMINGS_PATH, run_bounds
from uet_git.engine.pipeline import WORKER_SECONDS
from uet_git.engine.remotesteps import ledger_steps
from uet_git.errors import UetError
from uet_git.gitrepo import Repo, odb
from uet_git.gitrepo.merge import diff_bytes
from uet_git.ledger import query
from uet_git.ledger.log import read_ledger, read_plan, read_tip_blob

SHOWN_BYTES = 64 * 1024  # of each evidence blob and diff in the page


@dataclass
class WsReport:
    ws: str
    state: str
    attempt: int | None
    reason: str | None
    deps: list[str]
    history: list[dict[str, Any]]
    evidence: dict[str, str] = field(default_factory=dict)  # name -> text (cut)
    diff: str = ""


@dataclass
class Report:
    run: str
    base: str | None
    target: str | None
    started: str | None
    finished: bool
    landed: bool
    counts: dict[str, int]
    jobs: int
    order: list[str]
    levels: dict[str, int]
    workstreams: dict[str, WsReport]
    steps: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    timed: bool  # steps come from timings.json (else from the ledger's times)
    wall: float | None
    bounds: dict[str, Any]
    critical_path: list[str]
    landed_as: str | None = None  # "landed", "landed 2 of 5" (partial), None: nothing landed


def _text(data: bytes) -> str:
    cut = len(data) > SHOWN_BYTES
    text = data[:SHOWN_BYTES].decode("utf-8", "replace")
    return text + (f"\n[... {len(data) - SHOWN_BYTES} more bytes: uet show]" if cut else "")


def _ledger_steps(log: Any) -> list[dict[str, Any]]:
    """Without timings: per workstream and attempt, the worker's span the ledger implies (its
    recorded worker seconds before ``queued``, else first to last transition)."""
    steps: list[dict[str, Any]] = []
    spans: dict[tuple[str, int], list[float]] = {}
    for e in log.events:
        if not e.is_transition:
            continue
        key = (e.ws, e.attempt or 1)
        span = spans.setdefault(key, [float(e.time), float(e.time)])
        span[1] = float(e.time)
        raw = e.trailers.get(WORKER_SECONDS)
        if e.to == "queued" and raw:
            with contextlib.suppress(ValueError):
                span[0] = min(span[0], float(e.time) - float(raw))
    for (ws, attempt), (start, end) in spans.items():
        steps.append({"ws": ws, "attempt": attempt, "worker": 0, "step": "ledger",
                      "start": start, "end": max(end, start + 0.5), "ok": None,
                      "detail": "from the ledger's times (no timings recorded)"})
    return steps


def gather(repo: Repo, run: str) -> Report:
    log = read_ledger(repo, run)
    st = query.run_status(repo, run)
    plan = read_plan(repo, log) or {}
    raw = read_tip_blob(repo, log.tip, TIMINGS_PATH)
    timings: dict[str, Any] = {}
    if raw:
        try:
            timings = json.loads(raw)
        except ValueError:
            timings = {}
    steps = list(timings.get("steps") or [])
    steps += ledger_steps(log.events, steps)  # a Dask worker's steps: its transitions hold them
    sessions = list(timings.get("sessions") or [])
    timed = bool(steps)
    if not timed:
        steps = _ledger_steps(log)
    nodes = {n["id"]: n for n in plan.get("nodes") or [] if isinstance(n, dict)}
    jobs = int(plan.get("jobs") or (sessions[-1]["jobs"] if sessions else 1) or 1)
    wss: dict[str, WsReport] = {}
    for rec in st.workstreams:
        hist = [{"time": e.to_dict()["time"], "from": e.from_, "to": e.to,
                 "attempt": e.attempt, "reason": e.reason, "summary": e.summary}
                for e in log.transitions(rec.ws)]
        w = WsReport(rec.ws, rec.state, rec.attempt, rec.reason,
                     list(nodes.get(rec.ws, {}).get("depends_on") or []), hist)
        if rec.attempt is not None:
            try:
                names = query.evidence(repo, run, rec.ws, rec.attempt)
                for name in names if isinstance(names, list) else []:
                    blob = query.evidence(repo, run, rec.ws, rec.attempt, name)
                    if isinstance(blob, bytes):
                        w.evidence[name] = _text(blob)
            except UetError:
                pass
        change = rec.candidate or rec.patch
        if change and odb.has_object(repo, change):
            parent = odb.get_commit(repo, change).parent
            if parent:
                w.diff = _text(diff_bytes(repo, parent, change))
        wss[rec.ws] = w
    if sessions:
        wall: float | None = sum(max(0.0, float(s["ended"]) - float(s["started"]))
                                 for s in sessions)
    elif log.started and log.updated:
        wall = float(log.updated - log.started)
    else:
        wall = None
    bounds = run_bounds(repo, run, steps if timed else [], jobs=jobs, wall=wall)
    critical = bounds.get("critical_path") or \
        list((plan.get("critical_path") or {}).get("ids") or [])
    order = [i for i in plan.get("order") or [] if i in wss] or list(wss)
    levels = {n: int(nodes[n].get("wave") or 0) for n in order if n in nodes}
    return Report(run, st.base, st.target, query.iso(st.started) if st.started else None,
                  st.finished, st.landed, dict(st.counts), jobs, order, levels, wss, steps,
                  sessions, timed, wall, bounds, critical, landed_flag(st))
