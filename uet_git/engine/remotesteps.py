"""The timed steps of a remote attempt, as its ledger transition keeps them.

A Dask worker's steps (setup, tool, acceptance: what a local run reports to its observer and
``engine/live.py`` keeps in ``run/timings.json``) never reach the coordinator's observer. The
coordinator records them instead, with the attempt's last worker transition, in one trailer:

    Uet-Remote-Steps: at=1764590000.120 slot=0 fetch=0.210 tool=0.250+1.500:ok
        acceptance=1.800+0.300:failed    (one line in the ledger)

``at`` is the job's start on the coordinator's clock (the moment its result arrived less the
job's own duration: the worker's clock is never compared with the coordinator's), ``slot`` the
coordinator's worker that waited on the job, ``fetch`` the seconds the mirror's fetch took,
then each step as ``NAME=START+SECONDS:ok|failed`` with START in seconds from ``at``. The
same facts in words go into the transition's detail (``uet show``'s history), and
``ledger_steps`` turns the trailer back into ``timings.json`` steps for ``uet report``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REMOTE_STEPS = "Uet-Remote-Steps"
HOST_TRAILER = "Uet-Host"  # where an attempt (or a candidate's checks) ran: the machine
WORKER_TRAILER = "Uet-Worker"  # and the Dask worker's address
_STEP = re.compile(r"([a-z][a-z0-9_-]*)=([0-9.]+)\+([0-9.]+):(ok|failed)")


def steps_trailer(at: float, slot: int, fetch: float | None,
                  steps: Sequence[Mapping[str, Any]]) -> str:
    """The trailer's value (module doc); ``steps`` as ``remotejob.StepClock`` keeps them."""
    parts = [f"at={at:.3f}", f"slot={slot}"]
    if fetch is not None:
        parts.append(f"fetch={fetch:.3f}")
    for s in steps[:32]:
        name = str(s.get("step", ""))
        start, end = s.get("start"), s.get("end")
        if not re.fullmatch(r"[a-z][a-z0-9_-]*", name) or not isinstance(start, int | float) \
                or not isinstance(end, int | float):
            continue
        parts.append(f"{name}={max(0.0, start):.3f}+{max(0.0, end - start):.3f}:"
                     f"{'ok' if s.get('ok') else 'failed'}")
    return " ".join(parts)


def steps_words(host: str, worker: str, fetch: float | None,
                steps: Sequence[Mapping[str, Any]]) -> str:
    """The same in words, for a transition's detail: ``on HOST (WORKER): fetch 0.2 s, ...``."""
    said = [f"fetch {fetch:.1f} s"] if fetch is not None else []
    for s in steps[:32]:
        start, end = s.get("start"), s.get("end")
        if isinstance(start, int | float) and isinstance(end, int | float):
            said.append(f"{s.get('step')} {max(0.0, end - start):.1f} s"
                        + ("" if s.get("ok") else " (failed)"))
    return f"on {host} ({worker})" + (f": {', '.join(said)}" if said else "")


def parse_steps(value: str) -> tuple[float, int, list[dict[str, Any]]] | None:
    """(at, slot, steps with absolute start/end) from a trailer's value; None if unreadable."""
    fields = dict(tok.split("=", 1) for tok in value.split() if "=" in tok
                  and tok.split("=", 1)[0] in ("at", "slot", "fetch"))
    try:
        at, slot = float(fields["at"]), int(fields["slot"])
    except (KeyError, ValueError):
        return None
    steps = []
    for m in _STEP.finditer(value):
        start = at + float(m.group(2))
        steps.append({"step": m.group(1), "start": round(start, 3),
                      "end": round(start + float(m.group(3)), 3), "ok": m.group(4) == "ok"})
    return at, slot, steps


def ledger_steps(events: Iterable[Any], have: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``timings.json`` steps of the remote attempts a ledger's transitions record (their
    ``Uet-Remote-Steps``), leaving out any (workstream, attempt, step) ``have`` holds already."""
    seen = {(s.get("ws"), s.get("attempt"), s.get("step")) for s in have}
    out: list[dict[str, Any]] = []
    for e in events:
        raw = e.trailers.get(REMOTE_STEPS) if e.is_transition else None
        got = parse_steps(raw) if raw else None
        if got is None:
            continue
        _, slot, steps = got
        host = e.trailers.get(HOST_TRAILER, "?")
        for s in steps:
            if (e.ws, e.attempt or 1, s["step"]) in seen:
                continue
            out.append({"ws": e.ws, "attempt": e.attempt or 1, "worker": slot, **s,
                        "detail": f"on {host} (remote)"})
    return out
