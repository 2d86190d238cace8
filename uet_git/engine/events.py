"""What the engine tells whoever watches a run: the ``Observer`` protocol.

The engine and the commands report through an Observer and never print; the CLI's renderer
implements it (the live view, lines, JSON). Every method may be called from worker threads and
the run loop at once, so an implementation takes its own lock. ``NullObserver`` drops
everything: for tests and callers that only want the ledger.

Steps (``step_started`` / ``step_finished``) are the timed parts of an attempt a Gantt chart
shows, on the worker that ran them: ``tool`` (one per try of the tool), ``acceptance`` (the
workstream's acceptance commands on its patch, in the worker) and ``verify`` (the checks on a
candidate, by the integrator or a verifier). Worker numbers: 0.. the workers, -1 the
integrator, -2, -3 ... the verification queue's verifiers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Observer(Protocol):
    def start(self, run_id: str, ids: Sequence[str], *, jobs: int, target: str | None,
              base: str, resumed: bool = False) -> None:
        """The run (or its resume) starts over ``ids``."""

    def seed(self, states: Mapping[str, str]) -> None:
        """States already recorded (a resumed run), not transitions of this process."""

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        """A transition the ledger has just recorded."""

    def worker(self, idx: int, ws: str | None, stage: str = "") -> None:
        """Worker ``idx`` (-1: the integrator) now works on ``ws`` at ``stage``; None = idle."""

    def step_started(self, ws: str, worker: int, step: str, *, attempt: int = 1) -> None:
        """Worker ``worker`` starts ``step`` (tool, acceptance, verify) of ``ws``."""

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        """``step`` of ``ws`` ended on ``worker``: passed (``ok``) or not, with a short why."""

    def tick(self) -> None:
        """About a second passed with nothing to report."""

    def message(self, text: str, **fields: Any) -> None:
        """One line for the user (a warning, a note)."""

    def ledger_evidence(self) -> Mapping[str, bytes]:
        """Blobs to keep with the run's last ledger event (``run/NAME`` in the ledger tree):
        ``engine/live.py``'s ``timings.json``."""
        return {}

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        """The run's outcome and its status table (workstream, state, attempt, reason, time)."""


class NullObserver:
    """Observes nothing."""

    def start(self, run_id: str, ids: Sequence[str], *, jobs: int, target: str | None,
              base: str, resumed: bool = False) -> None:
        pass

    def seed(self, states: Mapping[str, str]) -> None:
        pass

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        pass

    def worker(self, idx: int, ws: str | None, stage: str = "") -> None:
        pass

    def step_started(self, ws: str, worker: int, step: str, *, attempt: int = 1) -> None:
        pass

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        pass

    def tick(self) -> None:
        pass

    def message(self, text: str, **fields: Any) -> None:
        pass

    def ledger_evidence(self) -> Mapping[str, bytes]:
        return {}

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        pass
