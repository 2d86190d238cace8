"""Read the ledger: runs, a run's status, its history and evidence. Readers never lock.

Where things come from (DESIGN.md, "The ledger in git"):
- the current state of a workstream is the state ref that exists for it
  (``refs/uet/<state>/RUN/WS``), read with ONE ``git for-each-ref`` whose patterns name only this
  run's directories, so the cost does not grow with the patches of other runs;
- reasons, attempts, patch/candidate oids and timings come from the trailers of the run's ledger
  commits (``refs/uet/ledger/RUN``), walked first-parent from the tip;
- the plan (``plan.json``) and evidence (``evidence/WS/ATTEMPT/NAME``) are blobs in the tree of
  the ledger tip (each ledger commit's tree carries everything before it).

A workstream whose state ref was removed by ``uet gc`` keeps the state of its last ledger
transition (``WsRecord.collected`` is then true).
"""


from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import GitError, Repo
from uet_git.gitrepo import refs as gitrefs
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.evidence import evidence, evidence_attempts
from uet_git.ledger.expected import recorded_integration
from uet_git.ledger.layout import (
    ROOT,
    check_run_id,
    integration_ref,
    ledger_ref,
    patch_prefix,
    state_prefixes,
)
from uet_git.ledger.log import (
    PENDING,
    Event,
    LedgerLog,
    WsRecord,
    advance,
    event_from_commit,
    iso,
    plan_deps,
    read_ledger,
    read_plan,
    read_tip_blob,
    ws_record,
)
from uet_git.ledger.states import STATES
from uet_git.ledger.words import all_counts

# Callers read the ledger through this module; these names live in log.py and evidence.py.
__all__ = [
    "PENDING",
    "Event",
    "LedgerLog",
    "RunInfo",
    "RunStatus",
    "WsRecord",
    "advance",
    "event_from_commit",
    "evidence",
    "evidence_attempts",
    "for_each_ref",
    "history",
    "integration_ref",
    "iso",
    "latest_run",
    "ledger_ref",
    "list_runs",
    "parse_trailers",
    "plan_deps",
    "read_ledger",
    "read_plan",
    "read_tip_blob",
    "resolve_run",
    "run_ids",
    "run_refs",
    "run_status",
    "state_refs_of",
    "ws_record",
    "ws_status",
]
PREFIX = ROOT
LAND_EVENT = "run: land"
PARTIAL_TRAILER = "Uet-Partial"  # on a partial landing (`uet land --only`): what it landed


@dataclass
class RunStatus:
    run: str
    base: str | None
    target: str | None
    started: int | None
    updated: int | None
    integration: str | None
    finished: bool
    landed: bool
    workstreams: list[WsRecord]
    counts: dict[str, int]  # only the states some workstream is in (to_dict: every state)
    landed_workstreams: list[str] = field(default_factory=list)

    @property
    def committed(self) -> int:
        return self.counts.get("committed", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "base": self.base,
            "target": self.target,
            "started": iso(self.started),
            "updated": iso(self.updated),
            "integration": self.integration,
            "finished": self.finished,
            "landed": self.landed,
            "landed_workstreams": list(self.landed_workstreams),
            "counts": all_counts(self.counts),
            "workstreams": [w.to_dict() for w in self.workstreams],
        }


@dataclass
class RunInfo:
    run: str
    base: str | None
    target: str | None
    started: int | None
    updated: int | None
    ledger: str  # the ledger tip oid
    finished: bool
    landed: bool
    counts: dict[str, int] = field(default_factory=dict)
    landed_workstreams: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "base": self.base,
            "target": self.target,
            "started": iso(self.started),
            "updated": iso(self.updated),
            "ledger": self.ledger,
            "finished": self.finished,
            "landed": self.landed,
            "landed_workstreams": list(self.landed_workstreams),
            "counts": all_counts(self.counts),
        }


def for_each_ref(repo: Repo, patterns: Iterable[str]) -> list[tuple[str, str]]:
    """``[(refname, oid)]`` for refs matching any pattern (none: no refs); the listing is
    ``gitrepo.refs.for_each_ref``'s."""
    pats = list(patterns)
    return list(gitrefs.for_each_ref(repo, *pats).items()) if pats else []


def run_refs(repo: Repo, run: str) -> dict[str, str]:
    """Every ref of one run except its patches: ledger, integration and state refs."""
    return gitrefs.for_each_ref(repo, ledger_ref(run), integration_ref(run), *state_prefixes(run))


def all_run_refs(repo: Repo, run: str) -> dict[str, str]:
    """Every ref of one run, its patches included."""
    return gitrefs.for_each_ref(repo, ledger_ref(run), integration_ref(run), patch_prefix(run),
                             *state_prefixes(run))


def state_refs_of(refs: Mapping[str, str], run: str) -> dict[str, list[tuple[str, str, str]]]:
    """``{ws: [(state, refname, oid), ...]}`` from a ref listing (normally one per ws)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for name, oid in refs.items():
        parts = name[len(PREFIX):].split("/") if name.startswith(PREFIX) else []
        if len(parts) == 3 and parts[0] in STATES and parts[1] == run:
            out.setdefault(parts[2], []).append((parts[0], name, oid))
    return out


# --------------------------------------------------------------------------- runs


def recorded_integration_tip(repo: Repo, run: str) -> str:
    """The integration tip the ledger recorded last: the ``Uet-Integration`` of the newest
    transition or event that moved it (``committed``, ``run: rebase``), else the run's base.
    What may land comes from here, never from the ref (a tool can move the ref)."""
    log = read_ledger(repo, run)
    tip = recorded_integration(log)
    if tip is None:
        raise UetError(f"run {run}: the ledger has no `run: start` commit with Uet-Base")
    return tip


def landed_tip(log: LedgerLog) -> tuple[str, str] | None:
    """``(branch ref, tip)`` of the newest ``run: land`` event (``Uet-Branch``,
    ``Uet-Landed``; the run's target and recorded integration tip for a landing recorded
    without them), or None when the run never landed."""
    lands = [e for e in log.run_events(LAND_EVENT) if e.subject == LAND_EVENT]
    if not lands:
        return None
    t = lands[-1].trailers
    branch = t.get("Uet-Branch") or log.target
    tip = t.get("Uet-Landed") or recorded_integration(log)
    if not branch or not tip:
        return None
    return (branch if branch.startswith("refs/") else f"refs/heads/{branch}"), tip


def landed_workstreams(repo: Repo, log: LedgerLog, states: Mapping[str, str]) -> list[str]:
    """The workstreams of the run whose change is on the target now, in ledger order: each
    recorded ``run: land`` brought either the workstreams its ``Uet-Partial`` names (a partial
    landing) or every workstream committed at that moment; a landing counts only while its
    branch still holds (contains) what it landed (a reset or a rollback by reset undoes it),
    and only workstreams still ``committed`` in ``states`` (a rolled-back or dropped one has
    not landed, whatever a landing once said)."""
    now: dict[str, str] = {}
    landed: list[str] = []
    held: dict[tuple[str, str], bool] = {}
    for e in log.events:
        if e.is_transition:
            now[e.ws] = e.to  # type: ignore[index,assignment]
            continue
        if e.ws is not None or e.subject != LAND_EVENT:
            continue
        where = _landing(log, e)
        if where is None:
            continue
        if where not in held:
            held[where] = _holds(repo, *where)
        if not held[where]:
            continue
        partial = e.trailers.get(PARTIAL_TRAILER)
        brought = [w for w in partial.split(",") if w] if partial is not None else \
            [ws for ws, st in now.items() if st == "committed"]
        landed += [ws for ws in brought if ws not in landed]
    return [ws for ws in landed if states.get(ws) == "committed"]


def _landing(log: LedgerLog, e: Event) -> tuple[str, str] | None:
    """``(branch ref, tip)`` one ``run: land`` event recorded."""
    branch = e.trailers.get("Uet-Branch") or log.target
    tip = e.trailers.get("Uet-Landed") or recorded_integration(log)
    if not branch or not tip:
        return None
    return (branch if branch.startswith("refs/") else f"refs/heads/{branch}"), tip


def _holds(repo: Repo, branch: str, tip: str) -> bool:
    now = repo.read_ref(branch)
    if now is None:
        return False
    try:
        return is_ancestor(repo, tip, now)
    except GitError:
        return False  # the landed commit is not in this repository


def is_landed(repo: Repo, log: LedgerLog) -> bool:
    """True when the run's target branch holds (contains) what the run last landed: a
    landing recorded in the ledger that the branch no longer holds (reset, rolled back by
    hand) is not landed."""
    landed = landed_tip(log)
    return landed is not None and _holds(repo, *landed)


def fully_landed(repo: Repo, log: LedgerLog, states: Mapping[str, str]
                 ) -> tuple[bool, list[str]]:
    """``(landed, workstreams)``: the landed workstreams (``landed_workstreams``), and whether
    the run counts as landed: its last landing is held and every committed workstream is on
    the target (a partial landing, or a rollback, is not "landed")."""
    done = landed_workstreams(repo, log, states)
    committed = [ws for ws, st in states.items() if st == "committed"]
    whole = bool(committed) and is_landed(repo, log) and all(ws in done for ws in committed)
    return whole, done


def run_ids(repo: Repo) -> list[str]:
    """Run ids with a ledger branch, oldest first (run ids sort by their start time)."""
    prefix = f"{PREFIX}ledger/"
    return sorted(name[len(prefix):] for name, _ in for_each_ref(repo, [prefix]))


def latest_run(repo: Repo) -> str | None:
    ids = run_ids(repo)
    return ids[-1] if ids else None


def resolve_run(repo: Repo, run: str | None) -> str:
    """``run`` checked to exist (a unique prefix of a run id is enough), or the latest run;
    UetError when there is none."""
    ids = run_ids(repo)
    if run is None:
        if not ids:
            raise UetError("no runs recorded in this repository (start one with `uet run`)")
        return ids[-1]
    if run in ids:
        return run
    matches = [r for r in ids if r.startswith(run)] if run else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UetError(f"run {run!r} is ambiguous: {', '.join(matches[:5])}")
    raise UetError(f"no run {run!r} in this repository (see `uet runs`)")


def list_runs(repo: Repo) -> list[RunInfo]:
    """Every run, oldest first (newest last), with its state counts."""
    ledgers = dict(for_each_ref(repo, [f"{PREFIX}ledger/"]))
    if not ledgers:
        return []
    states = for_each_ref(repo, [f"{PREFIX}{s}/" for s in STATES])
    counts: dict[str, dict[str, int]] = {}
    seen: dict[str, set[str]] = {}
    for name, _ in states:
        parts = name[len(PREFIX):].split("/")
        if len(parts) == 3:
            c = counts.setdefault(parts[1], {})
            c[parts[0]] = c.get(parts[0], 0) + 1
            seen.setdefault(parts[1], set()).add(parts[2])
    out: list[RunInfo] = []
    for name in sorted(ledgers):
        run = name[len(f"{PREFIX}ledger/"):]
        log = read_ledger(repo, run, tip=ledgers[name])
        c = counts.get(run, {})
        # Workstreams whose refs `uet gc` removed still count, by their last transition.
        for ws, e in log.last_transitions().items():
            if ws not in seen.get(run, set()) and e.to:
                c[e.to] = c.get(e.to, 0) + 1
        states = {ws: e.to for ws, e in log.last_transitions().items() if e.to}
        for name2, _ in for_each_ref(repo, [f"{PREFIX}committed/{run}/"]):
            states[name2.rsplit("/", 1)[1]] = "committed"
        landed, done = fully_landed(repo, log, states) if log.run_events(LAND_EVENT) \
            else (False, [])
        out.append(RunInfo(
            run=run, base=log.base, target=log.target, started=log.started,
            updated=log.updated, ledger=log.tip, finished=log.finished,
            landed=landed, counts={s: c[s] for s in STATES if c.get(s)},
            landed_workstreams=done,
        ))
    return out


# --------------------------------------------------------------------------- status


def run_status(repo: Repo, run: str) -> RunStatus:
    """Every workstream of ``run`` (planned ones without a transition as ``pending``)."""
    check_run_id(run)
    refs = run_refs(repo, run)
    tip = refs.get(ledger_ref(run))
    if tip is None:
        raise UetError(f"no run {run!r} in this repository (see `uet runs`)")
    log = read_ledger(repo, run, tip=tip)
    by_ws: dict[str, list[Event]] = {}
    for e in log.transitions():
        by_ws.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
    state_refs = state_refs_of(refs, run)
    order = planned(read_plan(repo, log))
    for ws in list(by_ws) + sorted(state_refs):
        if ws not in order:
            order.append(ws)
    records: list[WsRecord] = []
    for ws in order:
        rec = ws_record(ws, by_ws.get(ws, []))
        found = state_refs.get(ws)
        if found:
            # The ref is the truth for the state; the ledger gives the rest. (fsck reports any
            # disagreement or a second ref.)
            state, name, oid = sorted(found)[0]
            rec.state, rec.ref, rec.target = state, name, oid
        elif rec.state != PENDING:
            rec.collected = True
        records.append(rec)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.state] = counts.get(rec.state, 0) + 1
    ordered_counts = {s: counts[s] for s in (*STATES, PENDING) if counts.get(s)}
    landed, done = fully_landed(repo, log, {r.ws: r.state for r in records}) \
        if log.run_events(LAND_EVENT) else (False, [])
    for rec in records:
        rec.landed = rec.ws in done
    return RunStatus(
        run=run, base=log.base, target=log.target, started=log.started, updated=log.updated,
        integration=refs.get(integration_ref(run)), finished=log.finished,
        landed=landed, workstreams=records, counts=ordered_counts, landed_workstreams=done,
    )


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


def ws_status(repo: Repo, run: str, ws: str) -> WsRecord:
    for rec in run_status(repo, run).workstreams:
        if rec.ws == ws:
            return rec
    raise UetError(f"no workstream {ws!r} in run {run}")


# --------------------------------------------------------------------------- history


def history(repo: Repo, run: str, ws: str | None = None) -> list[Event]:
    """The run's ledger events oldest first; with ``ws`` only that workstream's transitions."""
    log = read_ledger(repo, run)
    if ws is None:
        return log.events
    events = log.transitions(ws)
    if not events:
        raise UetError(f"no workstream {ws!r} in the ledger of run {run}")
    return events
