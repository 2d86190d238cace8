"""What a run's ``--json`` events say about its time (for B2, B5 and CH): uet's start-up (the
process's start to its first ``tool-started`` event, on the harness's clock) and the run
without it, so a ratio can be read with and without the start-up that the other benchmarks
(and the lead's quiet-machine runs) measure on their own."""

from __future__ import annotations

from bench.common import UetResult


def startup(res: UetResult) -> float | None:
    """Seconds from the process's start to its first tool start (None: no tool started or no
    events kept: run it with ``stream_events=True`` and ``--json``)."""
    return next((t for t, e in res.events if e.get("event") == "tool-started"), None)


def in_run(res: UetResult) -> float:
    """The wall time without the start-up (the whole wall when it is unknown)."""
    s = startup(res)
    return res.wall - s if s is not None else res.wall
