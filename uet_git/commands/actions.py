"""A user's actions on one workstream of a run: ``uet retry`` and ``uet drop``.

retry: only a ``quarantined`` workstream, or a ``blocked`` one whose dependencies are all
committed now, can be retried. Without ``--reapply`` nothing is recorded here: the engine's
resume, given the workstream in ``only``, starts a new attempt for a quarantined one (and runs the
tool of a blocked one). With ``--reapply`` the existing patch goes back to the integrator: the
move ``quarantined -> queued`` is recorded here, then resume integrates it (re-verifying on the
current tip). Re-applying is refused for patches that never passed validation (``empty``,
``scope-violation``, ``too-large``) and for attempts without a patch. The blocked dependents
that can run once the workstream commits are retried with it.

drop: a ``quarantined`` or ``blocked`` workstream becomes ``dropped``; every dependent of it
(transitively) can then never run, so each one that is blocked (or not started yet) is dropped
as well, and the message lists them. Nothing is deleted from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uet_git.commands.resume import resume_run
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.options import RunOptions, RunResult
from uet_git.errors import UetError
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.query import plan_deps
from uet_git.ledger.writer import Ledger

RETRYABLE = ("quarantined", "blocked")
# Reasons whose patch never passed validation: re-applying it would skip the checks.
NO_REAPPLY = frozenset({"empty", "scope-violation", "too-large"})


def _state(states: Mapping[str, Any], ws: str) -> str | None:
    rec = states.get(ws)
    state = getattr(rec, "state", None)
    return None if state in (None, "pending") else str(state)


def _dependents(deps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {ws: [] for ws in deps}
    for ws, ds in deps.items():
        for d in ds:
            out.setdefault(d, []).append(ws)
    return out


def descendants(deps: Mapping[str, list[str]], ws: str) -> list[str]:
    """Every transitive dependent of ``ws``, in plan (topological) order."""
    dependents = _dependents(deps)
    seen: set[str] = set()
    stack = list(dependents.get(ws, []))
    while stack:
        d = stack.pop()
        if d not in seen:
            seen.add(d)
            stack.extend(dependents.get(d, []))
    order = [w for w in deps if w in seen]
    return order + sorted(seen - set(order))


def _lookup(ledger: Ledger, ws: str) -> tuple[dict[str, Any], dict[str, list[str]], Any]:
    states = dict(ledger.states())
    deps = plan_deps(ledger.plan)
    rec = states.get(ws)
    run = ledger.run
    if rec is None and ws not in deps:
        raise UetError(f"no workstream {ws!r} in run {run} (see `uet status {run}`)")
    if _state(states, ws) is None:
        raise UetError(f"{ws} has not run yet in run {run}; `uet resume {run}` runs it")
    return states, deps, rec


def retry_ws(repo: Repo, run_id: str, ws: str, *, reapply: bool, options: RunOptions,
             observer: Observer | None = None) -> RunResult:
    """Retry ``ws`` (see the module doc) and resume the run on it and the dependents it
    unblocks; returns the engine's result."""
    with Ledger.open(repo, run_id) as ledger:
        states, deps, rec = _lookup(ledger, ws)
        state = _state(states, ws)
        if state not in RETRYABLE:
            raise UetError(f"{ws} is {state}; only quarantined or blocked workstreams can be "
                           "retried")
        unmet = [d for d in deps.get(ws, []) if _state(states, d) != "committed"]
        if unmet:
            d = unmet[0]
            raise UetError(f"{ws} depends on {d}, which is {_state(states, d) or 'not started'}; "
                           f"retry {d} first (`uet retry {d} --run {run_id}`)")
        if reapply:
            if state == "blocked" or not rec.patch:
                raise UetError(f"{ws} has no patch to re-apply ({state}"
                               + (f", {rec.reason}" if rec.reason else "")
                               + "); retry it without --reapply for a new attempt")
            if rec.reason in NO_REAPPLY:
                raise UetError(f"{ws} was quarantined for {rec.reason}; its patch cannot be "
                               "re-applied: retry it without --reapply for a new attempt")
            ledger.record(ws, "queued", attempt=rec.attempt, patch=rec.patch,
                          summary="re-apply of the same patch requested by `uet retry "
                                  "--reapply`")
        only = {ws, *unblocked_by(deps, states, ws)}
    # The writer lock is released here: resume takes it itself.
    return resume_run(repo, run_id, options, observer or NullObserver(), only=only)


def unblocked_by(deps: Mapping[str, list[str]], states: Mapping[str, Any], ws: str) -> list[str]:
    """The dependents of ``ws`` that can run once it commits: blocked or not started, and every
    other dependency committed or itself in this list."""
    chosen: set[str] = {ws}
    out: list[str] = []
    for d in descendants(deps, ws):
        if _state(states, d) not in (None, "blocked"):
            continue
        if all(_state(states, x) == "committed" or x in chosen for x in deps.get(d, [])):
            chosen.add(d)
            out.append(d)
    return out


def drop_ws(repo: Repo, run_id: str, ws: str) -> str:
    """Drop ``ws`` and its dependents that can no longer run; returns the one-line summary."""
    with Ledger.open(repo, run_id) as ledger:
        states, deps, rec = _lookup(ledger, ws)
        state = _state(states, ws)
        if state not in RETRYABLE:
            raise UetError(f"{ws} is {state}; only quarantined or blocked workstreams can be "
                           "dropped")
        ledger.record(ws, "dropped", attempt=rec.attempt or 1, patch=rec.patch,
                      summary="dropped by `uet drop`")
        also: list[str] = []
        for d in descendants(deps, ws):
            dstate = _state(states, d)
            why = f"its dependency {ws} was dropped"
            if dstate is None:
                # Never started (an interrupted run): enter the ledger blocked, then dropped.
                ledger.record(d, "blocked", attempt=1, summary=why)
                dstate = "blocked"
                attempt = 1
            else:
                attempt = getattr(states[d], "attempt", None) or 1
            if dstate == "blocked":
                ledger.record(d, "dropped", attempt=attempt, summary=why)
                also.append(d)
    msg = f"dropped {ws} in run {run_id}"
    if also:
        msg += f"; also dropped its dependents that can no longer run: {', '.join(also)}"
    return msg
