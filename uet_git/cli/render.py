"""How uet shows itself: a run's live view on a terminal, one line per transition otherwise, or
one JSON object per transition (``--json``), then the status table and the git commands that
read the ledger; and the plain text tables of the read-only commands.

``Reporter`` implements the engine's ``Observer`` protocol (``engine/events.py``: start, seed,
transition, worker, tick, message, finish): the CLI builds one and passes it as ``observer``.
It is called from worker threads and the run loop at once, so every method takes a lock."""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from uet_git.engine.dryrun import DryRunView

# What the counts line shows, in this order.
COUNT_ORDER = ("pending", "running", "created", "validated", "queued", "applied", "verified",
               "committed", "quarantined", "blocked", "dropped", "rolled-back")


def text_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    cols = [list(headers), *[list(map(str, r)) for r in rows]]
    widths = [max(len(r[i]) for r in cols) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cols
    )


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


def _fmt_elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{seconds:4.1f}s"


class Reporter:
    """``mode``: ``live`` (ANSI redraw of the worker table), ``lines`` or ``json``."""
    def __init__(self, mode: str = "lines", out: TextIO | None = None) -> None:
        if mode == "auto":
            stream = out or sys.stdout
            mode = "live" if _isatty(stream) else "lines"
        self.mode = mode
        self.out = out or sys.stdout
        self._lock = threading.Lock()
        self.run_id: str | None = None
        self.states: dict[str, str] = {}
        self.workers: dict[int, tuple[str, str, float]] = {}  # idx -> (ws, stage, since)
        self._drawn = 0
        self._start = time.monotonic()
        self._broken = False

    # -- output primitives -------------------------------------------------------------------

    def _write(self, text: str) -> None:
        if self._broken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except (OSError, ValueError):
            # The reader went away (`uet run | head`): the run goes on, the ledger has it all.
            self._broken = True

    def _emit_json(self, obj: Mapping[str, Any]) -> None:
        self._write(json.dumps(obj, separators=(",", ":"), default=str) + "\n")

    def _clear_live(self) -> None:
        if self.mode == "live" and self._drawn:
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw_live(self) -> None:
        if self.mode != "live":
            return
        now = time.monotonic()
        lines = []
        for idx in sorted(self.workers, key=lambda i: (i < 0, i)):
            ws, stage, since = self.workers[idx]
            who = "integrator" if idx < 0 else f"worker {idx}"
            lines.append(f"  {who:<10} {ws:<24} {stage:<12} {_fmt_elapsed(now - since)}")
        lines.append("  " + self._counts_line() + f"   [{_fmt_elapsed(now - self._start)}]")
        self._write("\n".join(lines) + "\n")
        self._drawn = len(lines)

    def _counts_line(self) -> str:
        running = {ws for idx, (ws, _, _) in self.workers.items() if idx >= 0}
        c = Counter(s for ws, s in self.states.items() if not (s == "pending" and ws in running))
        c["running"] = len(running)
        parts = [f"{k} {c[k]}" for k in COUNT_ORDER if c.get(k)]
        return ", ".join(parts) or "nothing to do"

    # -- events ------------------------------------------------------------------------------

    def start(self, run_id: str, ids: Sequence[str], *, jobs: int, target: str | None,
              base: str, resumed: bool = False) -> None:
        with self._lock:
            self.run_id = run_id
            self._start = time.monotonic()
            for ws in ids:
                self.states.setdefault(ws, "pending")
            if self.mode == "json":
                self._emit_json({"event": "resume" if resumed else "start", "run": run_id,
                                 "workstreams": list(ids), "jobs": jobs, "target": target,
                                 "base": base})
            else:
                verb = "resuming" if resumed else "run"
                self._write(f"uet: {verb} {run_id}: {len(ids)} workstreams, {jobs} workers, "
                            f"target {target or '(none)'} at {base[:12]}\n")
                self._draw_live()

    def seed(self, states: Mapping[str, str]) -> None:
        """States already recorded (a resumed run), without printing them as transitions."""
        with self._lock:
            self.states.update(states)

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        with self._lock:
            self.states[ws] = to
            if self.mode == "json":
                self._emit_json({"event": "transition", "run": self.run_id, "ws": ws,
                                 "from": frm, "to": to, "attempt": attempt, "reason": reason,
                                 "detail": detail, "time": round(time.time(), 3)})
                return
            self._clear_live()
            why = f" [{reason}]" if reason else ""
            more = f"  {detail}" if detail else ""
            stamp = time.strftime("%H:%M:%S")
            self._write(f"{stamp} {ws}: {frm or 'new'} -> {to}{why}{more}\n")
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

    def tick(self) -> None:
        """Refresh elapsed times in the live view."""
        with self._lock:
            if self.mode == "live" and self.workers:
                self._clear_live()
                self._draw_live()

    def block(self, text: str, obj: Mapping[str, Any]) -> None:
        """A whole view at once (the dry run): ``text`` as is, or ``obj`` as one JSON line."""
        with self._lock:
            if self.mode == "json":
                self._emit_json(obj)
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

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        """The status table and how to inspect the ledger (or the JSON summary)."""
        with self._lock:
            self.workers.clear()
            if self.mode == "json":
                self._emit_json({"event": "summary", **summary})
                return
            self._clear_live()
            out = ["", text_table(rows, ["workstream", "state", "attempt", "reason", "time"])]
            counts = summary.get("counts") or {}
            out.append("")
            out.append("counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            if summary.get("message"):
                out.append(str(summary["message"]))
            run_id = summary.get("run")
            if run_id:
                out.append("")
                out.append("inspect the ledger:")
                out.extend(f"  {c}" for c in inspect_commands(str(run_id)))
            self._write("\n".join(out) + "\n")


def show_dry_run(reporter: Reporter, view: DryRunView) -> None:
    """``uet run --dry-run``: the view's lines, or its JSON record with ``--json``."""
    reporter.block("\n".join(view.lines), view.record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
