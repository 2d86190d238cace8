"""A run seen from outside while it runs, and its timings kept for later.

``LiveRun`` is an Observer that passes every call on to another (the CLI's Reporter) and
besides:

- keeps the live-state file ``<common git dir>/uet/live/RUN.json`` (format and reader in
  ``ledger/live.py``): which workstream each worker runs and at which stage, the run's pid and
  start. Written by atomic replace (a temporary file renamed over it), at most every
  ``interval`` seconds (a change within it is written on the next call or tick), and removed
  when the run finishes or is interrupted. A kill -9 leaves it behind: readers see the dead pid
  and treat it as stale; the next ``uet resume`` replaces it.
- times the steps the engine reports (``tool``, ``acceptance``, ``verify``, see
  ``engine/events.py``) and hands them to the ledger with the run's last event
  (``ledger_evidence``: ``run/timings.json``), so ``uet report`` can draw a Gantt chart after
  the run. A resumed run adds its steps to the ones recorded before.
- folds the run's ledger (``ledger/fold.py``) every ``fold_every`` seconds while it runs (on
  the thread of the transition that finds it due, through its own repository handle) and once
  it finished, so a ``uet status`` during or after the run, or after a kill -9, folds only
  the commits since.

``timings.json``: ``{"version": 1, "sessions": [{"pid", "started", "ended", "jobs",
"resumed"}], "steps": [{"ws", "attempt", "worker", "step", "start", "end", "ok", "detail"}]}``
with times in seconds since the epoch (``end`` null: still running when the session ended).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from uet_git.engine.events import Observer
from uet_git.engine.inputs import workstreams_from_record
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import MissingObject
from uet_git.ledger.fold import fold
from uet_git.ledger.keepalive import fresh_handle
from uet_git.ledger.layout import ledger_ref
from uet_git.ledger.live import live_path, proc_start
from uet_git.ledger.log import read_plan_at, read_tip_blob
from uet_git.plan.dag import build_plan

TIMINGS = "timings.json"  # the evidence name, under run/ in the ledger tree
FOLD_EVERY = 30.0  # seconds between folds of a running run's ledger (a kept fold per 30 s)
TIMINGS_PATH = f"run/{TIMINGS}"
WORK_STEPS = ("tool", "acceptance")  # a worker's time on a workstream: what the bound counts


class LiveRun:
    """Observer tee: ``inner`` sees everything; the live file and the timings are kept on the
    side (see the module doc). Thread-safe like every observer."""

    def __init__(self, repo: Repo, inner: Observer, *, interval: float = 0.5,
                 fold_every: float = FOLD_EVERY) -> None:
        self.repo = repo
        self.inner = inner
        self.interval = interval
        self.fold_every = fold_every
        self._folded = time.monotonic()
        self._lock = threading.Lock()
        self.run_id: str | None = None
        self.jobs = 0
        self.resumed = False
        self.started = time.time()
        self.workers: dict[int, dict[str, Any]] = {}
        self.steps: list[dict[str, Any]] = []
        self._open: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._earlier: dict[str, Any] = {}
        self._written = 0.0
        self._dirty = False
        self._done = False
        self._timer: threading.Timer | None = None

    # -- the live file -----------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"run": self.run_id, "pid": os.getpid(), "pid_start": proc_start(os.getpid()),
                "started": self.started, "updated": time.time(), "jobs": self.jobs,
                "finished": False,
                "running": [{"worker": idx, **w} for idx, w in sorted(self.workers.items())]}

    def _flush(self, force: bool = False) -> None:
        if self.run_id is None or self._done:
            return
        now = time.monotonic()
        if not force and not self._dirty:
            return
        if not force and now - self._written < self.interval:
            if self._timer is None:  # write the change when the interval is over
                self._timer = threading.Timer(self.interval - (now - self._written),
                                              self._later)
                self._timer.daemon = True
                self._timer.start()
            return
        path = live_path(self.repo, self.run_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # Liveness is a convenience: a full disk or a read-only dir must not stop the run.
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self._state()))
            os.replace(tmp, path)
        self._written, self._dirty = now, False

    def _later(self) -> None:
        with self._lock:
            self._timer = None
            self._flush()

    def close(self) -> None:
        """The run is over however it ended (an error too): no live file stays behind."""
        with self._lock:
            self._remove()

    def _remove(self) -> None:
        self._done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.run_id is not None:
            with contextlib.suppress(OSError):
                live_path(self.repo, self.run_id).unlink(missing_ok=True)

    # -- Observer ----------------------------------------------------------------------------

    def start(self, run_id: str, ids: Sequence[str], *, jobs: int, target: str | None,
              base: str, resumed: bool = False) -> None:
        with self._lock:
            self.run_id, self.jobs, self.resumed = run_id, jobs, resumed
            self.started = time.time()
            self._earlier = earlier_timings(self.repo, run_id) if resumed else {}
            self._flush(force=True)
        self.inner.start(run_id, ids, jobs=jobs, target=target, base=base, resumed=resumed)

    def seed(self, states: Mapping[str, str]) -> None:
        self.inner.seed(states)

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        with self._lock:
            self._dirty = True
            self._flush()
            due = self.run_id is not None and not self._done and \
                time.monotonic() - self._folded >= self.fold_every
            if due:
                self._folded = time.monotonic()
        if due:
            self._fold()
        self.inner.transition(ws, frm, to, attempt=attempt, reason=reason, detail=detail)

    def _fold(self) -> None:
        """Keep the fold of the run's ledger up to now (a nicety: a failure only leaves the
        fold to the next reader). A handle of its own: this runs on a worker's thread."""
        if self.run_id is not None:
            with contextlib.suppress(UetError, OSError):
                fold(fresh_handle(self.repo), self.run_id)

    def worker(self, idx: int, ws: str | None, stage: str = "") -> None:
        with self._lock:
            now = time.time()
            if ws is None:
                self.workers.pop(idx, None)
            else:
                prev = self.workers.get(idx)
                same = prev is not None and prev["ws"] == ws
                self.workers[idx] = {
                    "ws": ws, "stage": stage,
                    "since": prev["since"] if same and prev["stage"] == stage else now,
                    "ws_since": prev["ws_since"] if same else now}
            self._dirty = True
            self._flush()
        self.inner.worker(idx, ws, stage)

    def step_started(self, ws: str, worker: int, step: str, *, attempt: int = 1) -> None:
        with self._lock:
            rec = {"ws": ws, "attempt": attempt, "worker": worker, "step": step,
                   "start": round(time.time(), 3), "end": None, "ok": None, "detail": ""}
            self.steps.append(rec)
            self._open[(ws, worker, step)] = rec
        self.inner.step_started(ws, worker, step, attempt=attempt)

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        with self._lock:
            rec = self._open.pop((ws, worker, step), None)
            if rec is not None:
                rec.update(end=round(time.time(), 3), ok=ok, detail=detail[:200])
        self.inner.step_finished(ws, worker, step, attempt=attempt, ok=ok, detail=detail)

    def tick(self) -> None:
        with self._lock:
            self._flush()
        self.inner.tick()

    def message(self, text: str, **fields: Any) -> None:
        self.inner.message(text, **fields)

    def ledger_evidence(self) -> dict[str, bytes]:
        with self._lock:
            return {TIMINGS: json.dumps(self.timings(), indent=1).encode()}

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        with self._lock:
            self._remove()
        self.inner.finish(summary, rows)
        self._fold()  # the run's last records are in

    # -- timings -----------------------------------------------------------------------------

    def timings(self) -> dict[str, Any]:
        """This session's steps after those recorded by earlier sessions of the run."""
        session = {"pid": os.getpid(), "started": round(self.started, 3),
                   "ended": round(time.time(), 3), "jobs": self.jobs, "resumed": self.resumed}
        return {"version": 1,
                "sessions": [*self._earlier.get("sessions", []), session],
                "steps": [*self._earlier.get("steps", []), *(dict(s) for s in self.steps)]}

    def facts(self, run_id: str) -> dict[str, Any]:
        """For the final summary: the plan's bound and the bound from what this run measured,
        with the efficiency against the wall time so far."""
        with self._lock:
            steps = [dict(s) for s in self.steps]
        return run_bounds(self.repo, run_id, steps, jobs=self.jobs,
                          wall=time.time() - self.started)


def earlier_timings(repo: Repo, run: str) -> dict[str, Any]:
    """``run/timings.json`` as the ledger holds it ({} when absent or unreadable)."""
    try:
        tip = repo.read_ref(ledger_ref(run))
        raw = read_tip_blob(repo, tip, TIMINGS_PATH) if tip else None
        data = json.loads(raw) if raw else {}
    except (UetError, MissingObject, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def measured_weights(steps: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Seconds each workstream held a worker for its tool runs and acceptance."""
    out: dict[str, float] = {}
    for s in steps:
        if s.get("step") in WORK_STEPS and s.get("end") is not None:
            out[s["ws"]] = out.get(s["ws"], 0.0) + max(0.0, float(s["end"]) - float(s["start"]))
    return out


def run_bounds(repo: Repo, run: str, steps: Sequence[Mapping[str, Any]], *, jobs: int,
               wall: float | None) -> dict[str, Any]:
    """``bound_seconds`` (the recorded plan's ``max(critical path, work / jobs)`` from its
    weights: estimates, else earlier runs' durations, else 1 s each), ``bound_from``, and
    from the measured durations ``measured_bound_seconds``, ``critical_path`` and
    ``efficiency`` (measured bound / wall time). Empty when the plan cannot be read."""
    try:
        f = fold(repo, run)  # not a walk of every ledger commit; and the next reader's fold
        record = read_plan_at(repo, run, f.tip, f.root)
    except UetError:
        return {}
    if not record:
        return {}
    out: dict[str, Any] = {}
    if isinstance(record.get("lower_bound"), int | float):
        out["bound_seconds"] = round(float(record["lower_bound"]), 3)
        nodes = record.get("nodes") or []
        known = any(n.get("estimate") is not None or n.get("weight") not in (None, 1, 1.0)
                    for n in nodes if isinstance(n, dict))
        out["bound_from"] = "the plan's estimates and earlier runs" if known else \
            "the plan (no estimates: 1 s per workstream)"
    try:
        plan = build_plan(workstreams_from_record(record))
    except Exception:  # an old or odd record: the plan's own numbers are all we give
        return out
    selected = set(record.get("selected") or plan.ids)
    measured = measured_weights(steps)
    weights = {i: measured.get(i, 0.0) if i in selected else 0.0 for i in plan.ids}
    jobs = jobs or int(record.get("jobs") or 1)
    if measured and jobs >= 1:
        bound = plan.lower_bound(jobs, weights)
        out["measured_bound_seconds"] = round(bound, 3)
        out["critical_path"] = plan.critical_path(weights)[1]
        if wall:
            out["efficiency"] = round(min(1.0, bound / wall), 3) if wall > 0 else None
    return out
