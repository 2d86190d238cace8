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

import bisect
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
from uet_git.ledger.fold import LAND_EVENT, PARTIAL_TRAILER, Folded, Landing, fold, planned_of
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
    planned,
    read_ledger,
    read_plan,
    read_tip_blob,
    ws_record,
)
from uet_git.ledger.states import STATES
from uet_git.ledger.words import all_counts

# Callers read the ledger through this module; these names live in log.py and evidence.py.
__all__ = [
    "LAND_EVENT",
    "PARTIAL_TRAILER",
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
    "planned",
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
    ledger_tip: str | None = None  # where it was read (not in to_dict): the plan is there
    ledger_root: str | None = None  # the run's first ledger commit

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
    # refs/uet/<state>/RUN/WS: the directory names the state (one look-up per ref, not a split).
    dirs = {f"{PREFIX}{state}/{run}": state for state in STATES}
    for name, oid in refs.items():
        parent, _, ws = name.rpartition("/")
        state = dirs.get(parent)
        if state is not None:
            found = out.get(ws)
            if found is None:
                out[ws] = [(state, name, oid)]
            else:
                found.append((state, name, oid))
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


def landed_tip(f: Folded) -> tuple[str, str] | None:
    """``(branch ref, tip)`` of the newest ``run: land`` event (``Uet-Branch``,
    ``Uet-Landed``; the run's target and recorded integration tip for a landing recorded
    without them), or None when the run never landed."""
    return _landing(f, f.landings[-1]) if f.landings else None


def landed_workstreams(repo: Repo, f: Folded, states: Mapping[str, str]) -> list[str]:
    """The workstreams of the run whose change is on the target now, in ledger order: each
    recorded ``run: land`` brought either the workstreams its ``Uet-Partial`` names (a partial
    landing) or every workstream committed at that moment; a landing counts only while its
    branch still holds (contains) what it landed (a reset or a rollback by reset undoes it),
    and only workstreams still ``committed`` in ``states`` (a rolled-back or dropped one has
    not landed, whatever a landing once said). Ordered by the first held landing that brought
    each, then by its place in that landing (a partial one's list, else first transitions)."""
    held: dict[tuple[str, str], bool] = {}
    first: dict[str, tuple[int, int]] = {}  # ws -> (landing index, place in it)
    whole: list[tuple[int, int]] = []  # (seq, landing index) of held landings of everything
    for i, land in enumerate(f.landings):
        where = _landing(f, land)
        if where is None:
            continue
        if where not in held:
            held[where] = _holds(repo, *where)
        if not held[where]:
            continue
        if land.partial is None:
            whole.append((land.seq, i))
            continue
        for place, ws in enumerate(land.partial):
            key = (i, place)
            if first.get(ws, key) >= key:
                first[ws] = key
    if whole:
        seqs = [s for s, _ in whole]
        place_of = {ws: n for n, ws in enumerate(f.records)}
        for ws, spans in f.committed.items():
            for since, until in spans:
                # The first held landing after it became committed and before it left.
                k = bisect.bisect_right(seqs, since)  # type: ignore[arg-type]
                if k < len(seqs) and (until is None or seqs[k] < until):
                    key = (whole[k][1], place_of.get(ws, 0))
                    if first.get(ws, key) >= key:
                        first[ws] = key
                    break
    return [ws for ws in sorted(first, key=first.__getitem__) if states.get(ws) == "committed"]


def _landing(f: Folded, land: Landing) -> tuple[str, str] | None:
    """``(branch ref, tip)`` one ``run: land`` event recorded."""
    branch = land.branch or f.target
    tip = land.landed or f.recorded_integration
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


def fully_landed(repo: Repo, f: Folded, states: Mapping[str, str]
                 ) -> tuple[bool, list[str]]:
    """``(landed, workstreams)``: the landed workstreams (``landed_workstreams``), and whether
    the run counts as landed: its last landing is held and every committed workstream is on
    the target (a partial landing, or a rollback, is not "landed")."""
    if not f.landings:
        return False, []
    done = landed_workstreams(repo, f, states)
    committed = [ws for ws, st in states.items() if st == "committed"]
    last = landed_tip(f)
    whole = bool(committed) and last is not None and _holds(repo, *last) and \
        set(committed) <= set(done)
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
    committed: dict[str, list[str]] = {}
    for name, _ in states:
        parts = name[len(PREFIX):].split("/")
        if len(parts) == 3:
            c = counts.setdefault(parts[1], {})
            c[parts[0]] = c.get(parts[0], 0) + 1
            seen.setdefault(parts[1], set()).add(parts[2])
            if parts[0] == "committed":
                committed.setdefault(parts[1], []).append(parts[2])
    out: list[RunInfo] = []
    for name in sorted(ledgers):
        run = name[len(f"{PREFIX}ledger/"):]
        f = fold(repo, run, tip=ledgers[name])
        c = counts.get(run, {})
        # Workstreams whose refs `uet gc` removed still count, by their last transition.
        run_seen = seen.get(run, set())
        for ws, rec in f.records.items():
            if ws not in run_seen and rec.state != PENDING:
                c[rec.state] = c.get(rec.state, 0) + 1
        now = {ws: rec.state for ws, rec in f.records.items() if rec.state != PENDING}
        for ws in committed.get(run, []):
            now[ws] = "committed"
        landed, done = fully_landed(repo, f, now)
        out.append(RunInfo(
            run=run, base=f.base, target=f.target, started=f.started,
            updated=f.updated, ledger=f.tip, finished=f.finished,
            landed=landed, counts={s: c[s] for s in STATES if c.get(s)},
            landed_workstreams=done,
        ))
    return out


# --------------------------------------------------------------------------- status


def run_status(repo: Repo, run: str) -> RunStatus:
    """Every workstream of ``run`` (planned ones without a transition as ``pending``): states
    from the state refs, the rest from the ledger's fold (ledger/fold.py: only the commits
    since the last reader are read)."""
    check_run_id(run)
    refs = run_refs(repo, run)
    tip = refs.get(ledger_ref(run))
    if tip is None:
        raise UetError(f"no run {run!r} in this repository (see `uet runs`)")
    f = fold(repo, run, tip=tip)
    state_refs = state_refs_of(refs, run)
    order = planned_of(repo, f)
    known = set(order)
    for ws in [*f.records, *sorted(state_refs)]:
        if ws not in known:
            known.add(ws)
            order.append(ws)
    records: list[WsRecord] = []
    for ws in order:
        # The fold is this call's own (read or made for it): its records are filled in place.
        rec = f.records.get(ws) or WsRecord(ws=ws, state=PENDING)
        found = state_refs.get(ws)
        if found:
            # The ref is the truth for the state; the ledger gives the rest. (fsck reports any
            # disagreement or a second ref.)
            state, name, oid = found[0] if len(found) == 1 else min(found)
            rec.state, rec.ref, rec.target = state, name, oid
        elif rec.state != PENDING:
            rec.collected = True
        records.append(rec)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec.state] = counts.get(rec.state, 0) + 1
    ordered_counts = {s: counts[s] for s in (*STATES, PENDING) if counts.get(s)}
    landed, done = fully_landed(repo, f, {r.ws: r.state for r in records})
    landed_set = set(done)
    for rec in records:
        rec.landed = rec.ws in landed_set
    return RunStatus(
        run=run, base=f.base, target=f.target, started=f.started, updated=f.updated,
        integration=refs.get(integration_ref(run)), finished=f.finished,
        landed=landed, workstreams=records, counts=ordered_counts, landed_workstreams=done,
        ledger_tip=f.tip, ledger_root=f.root,
    )


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
