"""A run's ledger, read: its commits as events, the workstream records they fold into, the plan.

The ledger branch ``refs/uet/ledger/RUN`` is walked first-parent from its tip; every commit is
one ``Event`` (its trailers say which workstream moved, from and to which state, which attempt,
patch and candidate). ``ws_record`` folds a workstream's transitions into its ``WsRecord``.
The plan (``plan.json``) is a blob in the tree of the ledger tip.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import MissingObject, read_blob, walk_commits
from uet_git.gitrepo.trailers import split_message
from uet_git.ledger.layout import check_run_id, ledger_ref
from uet_git.ledger.states import STATES
from uet_git.ledger.words import PENDING

PLAN_PATH = "plan.json"
# On the transition whose candidate changes the checks (uet.toml, .uet/**, protected globs) of a
# workstream that declared ``may_change_checks: true`` (written by engine/verify.py).
MAY_CHANGE_CHECKS = "Uet-May-Change-Checks"
_NONE_VALUES = {"", "none", "-", "null", "(none)", "new"}


@dataclass
class Event:
    """One ledger commit. ``ws`` is None for run-level events (``run: start``, ``run: land``...)."""

    oid: str
    time: int
    ws: str | None
    from_: str | None
    to: str | None
    attempt: int | None
    reason: str | None
    subject: str
    summary: str
    trailers: dict[str, str]

    @property
    def patch(self) -> str | None:
        return oid_or_none(self.trailers.get("Uet-Patch"))

    @property
    def candidate(self) -> str | None:
        return oid_or_none(self.trailers.get("Uet-Candidate"))

    @property
    def is_transition(self) -> bool:
        return self.ws is not None and self.to is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "oid": self.oid,
            "time": iso(self.time),
            "ws": self.ws,
            "from": self.from_,
            "to": self.to,
            "attempt": self.attempt,
            "reason": self.reason,
            "subject": self.subject,
            "summary": self.summary,
            "trailers": dict(self.trailers),
        }


@dataclass
class WsRecord:
    """A workstream's current record. ``state`` is ``pending`` for a planned workstream with no
    transition yet. Times are Unix seconds (ledger commit times); ``duration`` = updated -
    started."""

    ws: str
    state: str
    attempt: int | None = None
    reason: str | None = None
    patch: str | None = None
    candidate: str | None = None
    started: int | None = None
    updated: int | None = None
    duration: int | None = None
    ref: str | None = None  # the state ref's full name (None when pending or collected)
    target: str | None = None  # the oid the state ref points to
    collected: bool = False  # state ref removed by `uet gc`; state read from the ledger
    landed: bool = False  # committed and on the target (query.run_status fills it)
    changes_checks: bool = False  # its current attempt's candidate changes the checks
    blocked_by: str | None = None  # blocked: the quarantined dependency (Uet-Blocked-By)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ws": self.ws,
            "state": self.state,
            "attempt": self.attempt,
            "reason": self.reason,
            "patch": self.patch,
            "candidate": self.candidate,
            "started": iso(self.started),
            "updated": iso(self.updated),
            "duration": self.duration,
            "ref": self.ref,
            "collected": self.collected,
            "landed": self.landed,
            "changes_checks": self.changes_checks,
            "blocked_by": self.blocked_by,
        }


@dataclass
class LedgerLog:
    """A run's ledger read oldest first, with what every reader derives from it."""

    run: str
    tip: str
    events: list[Event]
    base: str | None
    target: str | None

    @property
    def started(self) -> int | None:
        return self.events[0].time if self.events else None

    @property
    def updated(self) -> int | None:
        return self.events[-1].time if self.events else None

    def transitions(self, ws: str | None = None) -> list[Event]:
        return [e for e in self.events if e.is_transition and (ws is None or e.ws == ws)]

    def last_transitions(self) -> dict[str, Event]:
        last: dict[str, Event] = {}
        for e in self.events:
            if e.is_transition:
                last[e.ws] = e  # type: ignore[index]
        return last

    def run_events(self, subject_prefix: str) -> list[Event]:
        return [e for e in self.events if e.ws is None and e.subject.startswith(subject_prefix)]

    @property
    def finished(self) -> bool:
        return bool(self.run_events("run: finish"))


@functools.lru_cache(maxsize=1 << 14)
def iso(t: int | None) -> str | None:
    # Kept: a status of 10,000 workstreams formats two times each, a few thousand distinct.
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def oid_or_none(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip()
    return None if v.lower() in _NONE_VALUES else v


def _state_or_none(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip()
    return None if v.lower() in _NONE_VALUES else v


_SUBJECT_RE = re.compile(r"^(?P<ws>\S+): (?P<frm>\S+) -> (?P<to>\S+)")


def event_from_commit(oid: str, commit_time: int, message: str) -> Event:
    subject, summary, trailers = split_message(message)
    ws = trailers.get("Uet-Workstream")
    frm = _state_or_none(trailers.get("Uet-From"))
    to = _state_or_none(trailers.get("Uet-To"))
    if ws is None or to is None:
        m = _SUBJECT_RE.match(subject)
        if m and not subject.startswith("run:") and m["to"] in STATES:
            ws = ws or m["ws"]
            frm = frm if "Uet-From" in trailers else _state_or_none(m["frm"])
            to = to or m["to"]
    if ws is not None and to is None:
        ws = None  # a trailer-carrying run-level event, not a transition
    attempt: int | None = None
    raw_attempt = trailers.get("Uet-Attempt")
    if raw_attempt:
        try:
            attempt = int(raw_attempt)
        except ValueError:
            attempt = None
    return Event(
        oid=oid, time=commit_time, ws=ws, from_=frm, to=to, attempt=attempt,
        reason=_state_or_none(trailers.get("Uet-Reason")), subject=subject, summary=summary,
        trailers=trailers,
    )


def missing_object(run: str, exc: MissingObject) -> UetError:
    """The one-line error of a reader that met an object a concurrent prune removed."""
    return UetError(f"run {run}: {ledger_ref(run)}: {exc}; run `uet fsck --repair {run}`",
                    exit_code=1)


def read_ledger(repo: Repo, run: str, tip: str | None = None) -> LedgerLog:
    """Walk ``refs/uet/ledger/RUN`` first-parent from its tip; raise UetError if no such run,
    or if a ledger commit is missing from the repository (exit 1)."""
    check_run_id(run)
    if tip is None:
        tip = repo.read_ref(ledger_ref(run))
        if tip is None:
            raise UetError(f"no run {run!r} in this repository (no {ledger_ref(run)})")
    try:
        events = [event_from_commit(c.oid, c.commit_time, c.message)
                  for c in walk_commits(repo, tip, first_parent=True)]
    except MissingObject as exc:
        raise missing_object(run, exc) from None
    events.reverse()
    base = target = None
    for e in events:
        if e.ws is None and ("Uet-Base" in e.trailers or e.subject.startswith("run: start")):
            base = oid_or_none(e.trailers.get("Uet-Base"))
            target = oid_or_none(e.trailers.get("Uet-Target"))
            break
    return LedgerLog(run=run, tip=tip, events=events, base=base, target=target)


def read_tip_blob(repo: Repo, tip: str, path: str) -> bytes | None:
    """A blob at ``path`` in the tree of commit ``tip`` (None if absent); ``MissingObject``
    when the commit or a tree on the path is gone."""
    return read_blob(repo, tip, path)


def read_plan(repo: Repo, log: LedgerLog) -> dict[str, Any] | None:
    """``plan.json`` of the run: from the ledger tip, else from the root ledger commit."""
    return read_plan_at(repo, log.run, log.tip, log.events[0].oid if log.events else None)


def read_plan_at(repo: Repo, run: str, tip: str, root: str | None) -> dict[str, Any] | None:
    """``plan.json`` from the ledger commit ``tip``, else from the run's first one ``root``."""
    for oid in (tip, root):
        if oid is None:
            continue
        try:
            data = read_tip_blob(repo, oid, PLAN_PATH)
        except MissingObject as exc:
            raise missing_object(run, exc) from None
        if data is not None:
            try:
                plan = json.loads(data)
            except ValueError:
                return None
            return plan if isinstance(plan, dict) else None
    return None


def plan_deps(plan: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{ws: [deps]}`` in plan order from the ``plan.json`` the ledger writes (the engine's
    ``plan_record``: ``{"nodes": [{"id": ..., "depends_on": [...]}, ...], ...}``, nodes in
    plan order)."""
    nodes = (plan or {}).get("nodes")
    if not isinstance(nodes, list):
        return {}
    return {n["id"]: [str(d) for d in n.get("depends_on") or []]
            for n in nodes if isinstance(n, dict) and isinstance(n.get("id"), str)}


def planned(plan: Mapping[str, Any] | None) -> list[str]:
    """The workstreams the run set out to do, in plan order: the plan's ``selected`` ones
    (`uet run --only` records the whole plan but runs only these), else every node. A
    workstream the run never selected is no part of it, not ``pending``."""
    order = list(plan_deps(plan))
    selected = (plan or {}).get("selected")
    if isinstance(selected, list):
        chosen = set(map(str, selected))
        order = [ws for ws in order if ws in chosen]
    return order


def ws_record(ws: str, transitions: list[Event]) -> WsRecord:
    """The record of one workstream from its transitions (oldest first). Patch and candidate
    carry forward within an attempt; a new attempt starts without a candidate."""
    rec = WsRecord(ws=ws, state=PENDING)
    for e in transitions:
        advance(rec, e)
    return rec


def advance(rec: WsRecord, e: Event) -> None:
    """Apply one transition to ``rec`` (in place)."""
    if e.attempt is not None and e.attempt != rec.attempt:
        if rec.attempt is not None:
            rec.patch = rec.candidate = None
            rec.changes_checks = False
        rec.attempt = e.attempt
    if e.trailers.get(MAY_CHANGE_CHECKS, "").strip().lower() == "true":
        rec.changes_checks = True
    rec.patch = e.patch or rec.patch
    rec.candidate = e.candidate or rec.candidate
    rec.state = e.to or rec.state
    rec.reason = e.reason
    rec.blocked_by = None
    if rec.state == "blocked":
        # A blocked transition carries its why in its own trailers, not in Uet-Reason (it is
        # no quarantine): shown as the reason, with the dependency that blocks it.
        rec.reason = rec.reason or e.trailers.get("Uet-Block-Reason") or \
            ("dependency-quarantined" if e.summary.startswith("dependency-quarantined") else None)
        rec.blocked_by = e.trailers.get("Uet-Blocked-By")
    if rec.started is None:
        rec.started = e.time
    rec.updated = e.time
    if rec.started is not None:
        rec.duration = rec.updated - rec.started
