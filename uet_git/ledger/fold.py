"""A run's ledger folded into what ``uet status`` and ``uet runs`` show, kept between readers.

Reading a run's status needs, besides the state refs, each workstream's record from the ledger
(attempt, reason, patch, candidate, first and last transition times) and the run's own facts
(base, target, times, finish, landings). Folding the whole ledger for that walks every commit
(about six per workstream), so the fold is kept in ``<common git dir>/uet/cache/RUN.fold.json``
keyed by the ledger tip it was folded at. The ledger only ever appends (a CAS on its ref), and a
fold is a pure function of the tip's first-parent history, so a kept fold is never stale: the
next reader folds only the commits after it (``walk_commits(..., exclude=[kept tip])``, checked
to continue the kept tip, else everything is folded again). The file is a cache: anything
unreadable, of another ``VERSION`` or for another run is ignored, and a read-only
repository just folds every time.

What a fold keeps per workstream: its ``WsRecord`` as ``log.advance`` left it, and the ledger
positions (``seq``: the commit's index, oldest 0) between which it was ``committed``, so that
``landed_workstreams`` (ledger/query.py) can tell what each recorded landing brought without
replaying the history.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import MissingObject, has_object, list_tree, walk_commits
from uet_git.ledger.layout import check_run_id, ledger_ref
from uet_git.ledger.log import (
    PENDING,
    PLAN_PATH,
    Event,
    WsRecord,
    advance,
    event_from_commit,
    missing_object,
    oid_or_none,
    planned,
    read_plan_at,
)

VERSION = 2
LAND_EVENT = "run: land"
PARTIAL_TRAILER = "Uet-Partial"  # on a partial landing (`uet land --only`): what it landed
_REC_FIELDS = [f.name for f in fields(WsRecord)]


@dataclass
class Landing:
    """One recorded ``run: land`` event: its position and what its trailers say."""

    seq: int
    branch: str | None  # Uet-Branch (None: the run's target)
    landed: str | None  # Uet-Landed (None: the recorded integration tip)
    partial: list[str] | None  # Uet-Partial's workstreams (None: every committed one)


@dataclass
class Folded:
    run: str
    tip: str
    root: str | None = None  # the first ledger commit (``run: start``)
    count: int = 0  # ledger commits folded
    base: str | None = None
    target: str | None = None
    based: bool = False  # base/target read (from the first ``run: start``)
    started: int | None = None
    updated: int | None = None
    finished: bool = False
    integration: str | None = None  # the newest Uet-Integration (None: none recorded)
    records: dict[str, WsRecord] = field(default_factory=dict)  # first-transition order
    committed: dict[str, list[list[int | None]]] = field(default_factory=dict)
    landings: list[Landing] = field(default_factory=list)
    plan_oid: str | None = None  # the plan.json blob ``planned`` was read from
    planned: list[str] = field(default_factory=list)

    @property
    def recorded_integration(self) -> str | None:
        """``expected.recorded_integration`` of the folded ledger."""
        return self.integration or self.base


def fold_event(f: Folded, e: Event) -> None:
    """Add one ledger event (the next, oldest first) to ``f`` in place."""
    seq = f.count
    f.count += 1
    if f.root is None:
        f.root = e.oid
    if f.started is None:
        f.started = e.time
    f.updated = e.time
    f.tip = e.oid
    integration = oid_or_none(e.trailers.get("Uet-Integration"))
    if integration:
        f.integration = integration
    if e.ws is None:
        if not f.based and ("Uet-Base" in e.trailers or e.subject.startswith("run: start")):
            f.based = True
            f.base = oid_or_none(e.trailers.get("Uet-Base"))
            f.target = oid_or_none(e.trailers.get("Uet-Target"))
        if e.subject.startswith("run: finish"):
            f.finished = True
        if e.subject == LAND_EVENT:
            partial = e.trailers.get(PARTIAL_TRAILER)
            f.landings.append(Landing(seq, e.trailers.get("Uet-Branch") or None,
                                      e.trailers.get("Uet-Landed") or None,
                                      None if partial is None else
                                      [w for w in partial.split(",") if w]))
    if not e.is_transition:
        return
    ws: str = e.ws  # type: ignore[assignment]
    rec = f.records.get(ws)
    if rec is None:
        rec = f.records[ws] = WsRecord(ws=ws, state=PENDING)
    was = rec.state
    advance(rec, e)
    if rec.state == "committed" and was != "committed":
        f.committed.setdefault(ws, []).append([seq, None])
    elif was == "committed" and rec.state != "committed":
        f.committed[ws][-1][1] = seq


def cache_path(repo: Repo, run: str) -> Path:
    return repo.uet_dir / "cache" / f"{run}.fold.json"


def fold(repo: Repo, run: str, tip: str | None = None) -> Folded:
    """The fold of ``run``'s ledger at ``tip`` (default: the ledger ref), from the kept fold
    plus the commits after it; UetError when there is no such run or a ledger commit is
    missing (exit 1, as ``read_ledger``)."""
    check_run_id(run)
    if tip is None:
        tip = repo.read_ref(ledger_ref(run))
        if tip is None:
            raise UetError(f"no run {run!r} in this repository (no {ledger_ref(run)})")
    kept = load(repo, run)
    if kept is not None and kept.tip == tip:
        if not has_object(repo, tip):  # a prune took the tip: say so, as a walk would
            raise missing_object(run, MissingObject("commit", tip))
        return kept
    start = kept if kept is not None else Folded(run=run, tip=tip)
    out = _continue(repo, start, tip)
    if out is None:  # the kept fold is not an ancestor of the tip: fold it all
        out = _continue(repo, Folded(run=run, tip=tip), tip)
    assert out is not None
    out.tip = tip
    save(repo, out)
    return out


def _continue(repo: Repo, f: Folded, tip: str) -> Folded | None:
    """``f`` with the first-parent commits after ``f.tip`` up to ``tip`` folded in (None:
    ``tip`` does not continue ``f.tip``)."""
    fresh = f.count == 0
    try:
        new = list(walk_commits(repo, tip, first_parent=True,
                                exclude=() if fresh else (f.tip,)))
    except MissingObject as exc:
        if fresh:
            raise missing_object(f.run, exc) from None
        return None
    new.reverse()
    if not fresh and (not new or not new[0].parents or new[0].parents[0] != f.tip):
        return None
    for c in new:
        fold_event(f, event_from_commit(c.oid, c.commit_time, c.message))
    return f


def planned_of(repo: Repo, f: Folded) -> list[str]:
    """``log.planned`` of the run's ``plan.json`` (the ledger tip's, else the first commit's,
    as ``read_plan_at``), kept in the fold by the blob's id: a plan of 10,000 workstreams is
    megabytes of JSON, parsed again only when it changed."""
    oid = _plan_blob(repo, f)
    if oid is not None and oid == f.plan_oid:
        return list(f.planned)
    f.plan_oid, f.planned = oid, planned(read_plan_at(repo, f.run, f.tip, f.root))
    if oid is not None:
        save(repo, f)
    return list(f.planned)


def _plan_blob(repo: Repo, f: Folded) -> str | None:
    for oid in (f.tip, f.root):
        if oid is None:
            continue
        try:
            entries = list_tree(repo, oid)
        except MissingObject as exc:
            raise missing_object(f.run, exc) from None
        for e in entries:
            if e.name == PLAN_PATH:
                return e.oid if e.kind == "blob" else None
    return None


# --------------------------------------------------------------------------- the kept file


def _rec_row(r: WsRecord) -> list[Any]:
    return [getattr(r, name) for name in _REC_FIELDS]


def to_json(f: Folded) -> dict[str, Any]:
    return {"version": VERSION, "run": f.run, "tip": f.tip, "root": f.root, "count": f.count,
            "base": f.base, "target": f.target, "based": f.based, "started": f.started,
            "updated": f.updated, "finished": f.finished, "integration": f.integration,
            "fields": _REC_FIELDS, "records": [_rec_row(r) for r in f.records.values()],
            "committed": f.committed,
            "landings": [[x.seq, x.branch, x.landed, x.partial] for x in f.landings],
            "plan_oid": f.plan_oid, "planned": f.planned}


def from_json(d: dict[str, Any], run: str) -> Folded | None:
    if d.get("version") != VERSION or d.get("run") != run or d.get("fields") != _REC_FIELDS:
        return None
    f = Folded(run=run, tip=str(d["tip"]), root=d["root"], count=int(d["count"]),
               base=d["base"], target=d["target"], based=bool(d["based"]),
               started=d["started"], updated=d["updated"], finished=bool(d["finished"]),
               integration=d["integration"], committed=dict(d["committed"]),
               landings=[Landing(int(s), b, la, p) for s, b, la, p in d["landings"]],
               plan_oid=d["plan_oid"], planned=list(d["planned"]))
    for row in d["records"]:
        rec = WsRecord(*row)
        f.records[rec.ws] = rec
    return f


def load(repo: Repo, run: str) -> Folded | None:
    try:
        data = json.loads(cache_path(repo, run).read_bytes())
        return from_json(data, run) if isinstance(data, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(repo: Repo, f: Folded) -> None:
    """Keep ``f`` (atomic replace; a cache: a read-only or full disk only costs the next
    reader a fold)."""
    path = cache_path(repo, f.run)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(to_json(f), separators=(",", ":")))
        os.replace(tmp, path)
