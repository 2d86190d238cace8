"""How uet shows itself: a run's live view on a terminal, one line per transition otherwise, or
one JSON object per transition (``--json``), then the status table and the git commands that
read the ledger; and the plain text tables of the read-only commands.

``Reporter`` implements the engine's ``Observer`` protocol (``engine/events.py``: start, seed,
transition, worker, tick, message, finish): the CLI builds one and passes it as ``observer``.
It is called from worker threads and the run loop at once, so every method takes a lock.

JSON lines (``--json``), one object each with ``event`` and ``time`` (ISO 8601 UTC with
milliseconds, like every time uet prints as JSON): ``start``/``resume`` (run, workstreams, jobs,
target, base), ``transition`` (ws, from, to, attempt, reason, detail), ``tool-started``,
``tool-finished``, ``acceptance-started``, ``acceptance-finished``, ``verify-started``,
``verify-finished`` (ws, worker, attempt; ``-finished`` adds ok, seconds, detail; worker -1 is
the integrator, -2... the verifiers), ``message``, and last ``summary`` (run, exit_code,
counts, landed, message, wall_seconds, and from the recorded plan bound_seconds, bound: what
no schedule on these workers beats, from the estimates, and measured_bound_seconds: the same
from the measured durations of this run, with efficiency = measured bound / wall).
``quiet``: nothing but the final summary."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from uet_git.ledger.words import all_counts, plural

if TYPE_CHECKING:
    from uet_git.engine.dryrun import DryRunView
    from uet_git.plan.dag import Plan

# What the counts line shows, in this order.
COUNT_ORDER = ("pending", "running", "created", "validated", "queued", "applied", "verified",
               "committed", "quarantined", "blocked", "dropped", "rolled-back")


def text_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """Left-aligned columns two spaces apart, trailing spaces cut. One format string for
    every row (a `uet status` of 10,000 workstreams is 10,000 rows): ``{:<w}`` pads a
    string as ``ljust(w)`` does."""
    n = len(headers)
    cols = [list(map(str, headers)), *[list(map(str, r)) for r in rows]]
    if any(len(r) != n for r in cols):
        raise ValueError("text_table: a row with another number of cells than the headers")
    widths = [max(map(len, col)) for col in zip(*cols, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*r).rstrip() for r in cols])


# The read-only commands' words for times, durations and counts (status, runs, log, show).
NO_RUNS = "No runs yet in this repository: start one with `uet run`."


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def fmt_time(t: int | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no workstreams"


def wrap(prefix: str, text: str, width: int = 100) -> str:
    """``text`` after ``prefix``, wrapped at spaces with continuation lines indented under it
    (ids and paths are never broken)."""
    return textwrap.fill(text, width=width, initial_indent=prefix,
                         subsequent_indent=" " * len(prefix), break_on_hyphens=False,
                         break_long_words=False)


def wave_lines(waves: Sequence[Sequence[str]]) -> list[str]:
    """The plan's waves as ``uet plan`` and ``uet run --dry-run`` show them: ``wave 1: a b``."""
    return [wrap(f"  wave {k}: ", " ".join(wave)) for k, wave in enumerate(waves, 1)]


def inspect_commands(run_id: str) -> list[str]:
    return [
        f"git log --oneline refs/uet/ledger/{run_id}",
        f"git for-each-ref refs/uet/quarantined/{run_id}/",
        f"git log --oneline refs/uet/integration/{run_id}",
        "uet status " + run_id,
        "uet show WS",
    ]


def iso_now(t: float | None = None) -> str:
    """``t`` (default: now) as ISO 8601 UTC with milliseconds: ``2026-12-01T10:47:00.123Z``."""
    when = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _fmt_elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{seconds:4.1f}s"


class Reporter:
    """``mode``: ``live`` (ANSI redraw of the worker table), ``lines`` or ``json``;
    ``quiet``: only the final summary. ``facts(run_id)`` adds fields to the summary (the wall
    time and the plan's bound, read from the ledger by the caller)."""
    def __init__(self, mode: str = "lines", out: TextIO | None = None, *, quiet: bool = False,
                 facts: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        if mode == "auto":
            stream = out or sys.stdout
            mode = "live" if _isatty(stream) else "lines"
        self.mode = mode
        self.quiet = quiet
        self.facts = facts
        self.out = out or sys.stdout
        self._steps: dict[tuple[str, int, str], float] = {}  # (ws, worker, step) -> started
        self._lock = threading.Lock()
        self.run_id: str | None = None
        self.states: dict[str, str] = {}
        # How many workstreams are in each state, kept with ``states``: the live view draws
        # its counts line on every event, and recounting every workstream there made a
        # 10,000-workstream run on a terminal quadratic.
        self._counts: Counter[str] = Counter()
        self.workers: dict[int, tuple[str, str, float]] = {}  # idx -> (ws, stage, since)
        self._drawn = 0
        self._start = time.monotonic()
        self._broken = False

    # -- output primitives -------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        self._say(text)

    def _say(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            # The reader went away (`uet run | head`): the run goes on, the ledger has it all.
            self._broken = True

    def _emit_json(self, obj: Mapping[str, Any], *, final: bool = False) -> None:
        line = json.dumps({**obj, "time": iso_now()}, separators=(",", ":"), default=str)
        (self._say if final else self._write)(line + "\n")

    def _clear_live(self) -> None:
        if self.mode == "live" and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw_live(self) -> None:
        if self.mode != "live" or self.quiet:
            return
        now = time.monotonic()
        lines = []
        for idx in sorted(self.workers, key=lambda i: (i < 0, i)):
            ws, stage, since = self.workers[idx]
            who = "integrator" if idx < 0 else f"worker {idx}"
            lines.append(f"  {who:<10} {ws:<24} {stage:<12} {_fmt_elapsed(now - since)}")
        lines.append("  " + self.counts_line() + f"   [{_fmt_elapsed(now - self._start)}]")
        self._write("\n".join(lines) + "\n")
        self._drawn = len(lines)

    def counts_line(self) -> str:
        """The live view's last line: how many workstreams are in each state, and running."""
        running = {ws for idx, (ws, _, _) in self.workers.items() if idx >= 0}
        c = self._counts.copy()
        c["pending"] -= sum(1 for ws in running if self.states.get(ws) == "pending")
        c["running"] = len(running)
        parts = [f"{k} {c[k]}" for k in COUNT_ORDER if c.get(k)]
        return ", ".join(parts) or "nothing to do"

    def _set_state(self, ws: str, state: str) -> None:
        old = self.states.get(ws)
        if old is not None:
            self._counts[old] -= 1
        self.states[ws] = state
        self._counts[state] += 1

    # -- events ------------------------------------------------------------------------------

    def start(self, run_id: str, ids: Sequence[str], *, jobs: int, target: str | None,
              base: str, resumed: bool = False) -> None:
        with self._lock:
            self.run_id = run_id
            self._start = time.monotonic()
            for ws in ids:
                if ws not in self.states:
                    self._set_state(ws, "pending")
            if self.mode == "json":
                self._emit_json({"event": "resume" if resumed else "start", "run": run_id,
                                 "workstreams": list(ids), "jobs": jobs, "target": target,
                                 "base": base})
            else:
                verb = "resuming" if resumed else "run"
                self._write(f"uet: {verb} {run_id}: {plural(len(ids), 'workstream')}, "
                            f"{plural(jobs, 'worker')}, "
                            f"target {target or '(none)'} at {base[:12]}\n")
                self._draw_live()

    def seed(self, states: Mapping[str, str]) -> None:
        """States already recorded (a resumed run), without printing them as transitions."""
        with self._lock:
            for ws, state in states.items():
                self._set_state(ws, state)

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        with self._lock:
            self._set_state(ws, to)
            if self.mode == "json":
                self._emit_json({"event": "transition", "run": self.run_id, "ws": ws,
                                 "from": frm, "to": to, "attempt": attempt, "reason": reason,
                                 "detail": detail})
                return
            self._clear_live()
            why = f" [{reason}]" if reason else ""
            more = f"  {detail}" if detail else ""
            stamp = time.strftime("%H:%M:%S")
            self._write(f"{stamp} {ws}: {frm or 'none'} -> {to}{why}{more}\n")
            self._draw_live()

    def worker(self, idx: int, ws: str | None, stage: str = "") -> None:
        """Worker ``idx`` now works on ``ws`` at ``stage`` (None = idle). Live view only."""
        with self._lock:
            if ws is None:
                self.workers.pop(idx, None)
            else:
                prev = self.workers.get(idx)
                since = prev[2] if prev and prev[0] == ws else time.monotonic()
                self.workers[idx] = (ws, stage, since)
            if self.mode == "live":
                self._clear_live()
                self._draw_live()

    def step_started(self, ws: str, worker: int, step: str, *, attempt: int = 1) -> None:
        with self._lock:
            self._steps[(ws, worker, step)] = time.monotonic()
            if self.mode == "json":
                self._emit_json({"event": f"{step}-started", "run": self.run_id, "ws": ws,
                                 "worker": worker, "attempt": attempt})

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        with self._lock:
            began = self._steps.pop((ws, worker, step), None)
            if self.mode == "json":
                took = None if began is None else round(time.monotonic() - began, 3)
                self._emit_json({"event": f"{step}-finished", "run": self.run_id, "ws": ws,
                                 "worker": worker, "attempt": attempt, "ok": ok,
                                 "seconds": took, "detail": detail})

    def tick(self) -> None:
        """Refresh elapsed times in the live view."""
        with self._lock:
            if self.mode == "live" and self.workers:
                self._clear_live()
                self._draw_live()

    def block(self, text: str, obj: Mapping[str, Any]) -> None:
        """A whole view at once (the dry run): ``text`` as is, or ``obj`` as one JSON line."""
        with self._lock:
            if self.mode == "json":  # a view, not an event: no time
                self._write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")
                return
            self._clear_live()
            self._write(text if text.endswith("\n") else text + "\n")
            self._draw_live()

    def message(self, text: str, **fields: Any) -> None:
        with self._lock:
            if self.mode == "json":
                self._emit_json({"event": "message", "run": self.run_id, "message": text,
                                 **fields})
                return
            self._clear_live()
            self._write(f"uet: {text}\n")
            self._draw_live()

    def ledger_evidence(self) -> Mapping[str, bytes]:
        return {}

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        """The status table and how to inspect the ledger (or the JSON summary)."""
        with self._lock:
            self.workers.clear()
            wall = time.monotonic() - self._start
            summary = {**summary, "wall_seconds": round(wall, 3)}
            if self.facts is not None and summary.get("run"):
                summary.update(self.facts(str(summary["run"])))
            counts = summary.get("counts") or {}
            if self.mode == "json":
                self._emit_json({"event": "summary", **summary, "counts": all_counts(counts)},
                                final=True)
                return
            self._clear_live()
            # The table and the counts line as `uet status` prints them.
            out = ["", text_table(rows, ["WORKSTREAM", "STATE", "ATTEMPT", "REASON",
                                         "DURATION"])]
            total = sum(counts.values())
            shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            out.append(f"{plural(total, 'workstream')}: {shown or 'none'}")
            if summary.get("message"):
                out.append(str(summary["message"]))
            out.append(timing_line(summary))
            run_id = summary.get("run")
            if run_id:
                out.append("")
                out.append("inspect the ledger:")
                out.extend(f"  {c}" for c in inspect_commands(str(run_id)))
            self._say("\n".join(out) + "\n")


def timing_line(summary: Mapping[str, Any]) -> str:
    """``wall time 12.3 s; bound 10.0 s from the plan (...)`` for the final summary."""
    line = f"wall time {summary.get('wall_seconds', 0.0):.1f} s"
    bound = summary.get("bound_seconds")
    if isinstance(bound, int | float):
        how = summary.get("bound_from") or "the plan's estimates"
        line += f"; bound {bound:.1f} s from {how}"
    measured = summary.get("measured_bound_seconds")
    if isinstance(measured, int | float):
        line += f"; {measured:.1f} s from this run's measured durations"
        eff = summary.get("efficiency")
        if isinstance(eff, int | float):
            line += f" (efficiency {eff:.0%})"
    return line


def show_dry_run(reporter: Reporter, view: DryRunView) -> None:
    """``uet run --dry-run``: the view's lines, or its JSON record with ``--json``."""
    reporter.block("\n".join(view.lines), view.record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dag_dot(plan: Plan, implicit: Sequence[tuple[str, str]] = ()) -> str:
    """The plan's DAG for Graphviz (``uet plan --dot | dot -Tsvg``): an edge from each
    dependency to its dependent, the critical path in red, implicit edges (predicted
    conflicts, serialised) dashed."""
    _, path = plan.critical_path()
    hot, hot_edges = set(path), set(itertools.pairwise(path))
    lines = ["digraph uet {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef2f7", '
             'fontname="Helvetica"];']
    for ws_id in plan.ids:
        title = plan.workstreams[ws_id].title
        label = ws_id + (f"\\n{title}" if title else "")
        extra = ', color="#cf222e", penwidth=2' if ws_id in hot else ""
        lines.append(f"  {_dot_id(ws_id)} [label={_dot_id(label)}{extra}];")
    for a, b in plan.edges():
        extra = ' [color="#cf222e", penwidth=2]' if (a, b) in hot_edges else ""
        lines.append(f"  {_dot_id(a)} -> {_dot_id(b)}{extra};")
    for a, b in implicit:
        lines.append(f'  {_dot_id(a)} -> {_dot_id(b)} [style=dashed, color="#8c959f"];')
    lines.append("}")
    return "\n".join(lines)


def _mermaid_id(ws_id: str, index: Mapping[str, int]) -> str:
    return f"n{index[ws_id]}"  # ids may hold '.', '-': mermaid node ids may not


def dag_mermaid(plan: Plan, implicit: Sequence[tuple[str, str]] = ()) -> str:
    """The plan's DAG as a Mermaid flowchart (``uet plan --mermaid``; GitHub renders it in a
    ```mermaid block): the critical path's nodes in the ``critical`` class, implicit edges
    dotted."""
    _, path = plan.critical_path()
    index = plan.index
    lines = ["flowchart LR"]
    for ws_id in plan.ids:
        label = ws_id.replace('"', "'")
        lines.append(f'  {_mermaid_id(ws_id, index)}["{label}"]')
    for a, b in plan.edges():
        lines.append(f"  {_mermaid_id(a, index)} --> {_mermaid_id(b, index)}")
    for a, b in implicit:
        lines.append(f"  {_mermaid_id(a, index)} -.-> {_mermaid_id(b, index)}")
    if path:
        lines.append("  classDef critical stroke:#cf222e,stroke-width:3px")
        lines.append("  class " + ",".join(_mermaid_id(i, index) for i in path) + " critical")
    return "\n".join(lines)
