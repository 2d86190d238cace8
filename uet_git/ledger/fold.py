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
import re
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

VERSION = 3
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


@dataclass(eq=False)
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
    landings: list[Landing] = field(default_factory=list)
    plan_oid: str | None = None  # the plan.json blob ``planned`` was read from
    planned: list[str] = field(default_factory=list)
    # ``committed`` as read from the kept file, decoded when first asked for: only a landing
    # or a continued fold needs it, and at 10,000 workstreams it is 20,000 lists.
    committed_columns: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    _committed: dict[str, list[list[int | None]]] | None = field(
        default=None, repr=False, compare=False)

    @property
    def committed(self) -> dict[str, list[list[int | None]]]:
        """``{ws: [[since, until], ...]}``: the ledger positions between which each
        workstream was ``committed`` (``until`` None: it still is)."""
        if self._committed is None:
            cols, self.committed_columns = self.committed_columns, None
            self._committed = {} if cols is None else _committed_of(cols)
        return self._committed

    @committed.setter
    def committed(self, value: dict[str, list[list[int | None]]]) -> None:
        self._committed, self.committed_columns = value, None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Folded) and self._key() == other._key()

    def _key(self) -> tuple[object, ...]:
        return (self.run, self.tip, self.root, self.count, self.base, self.target, self.based,
                self.started, self.updated, self.finished, self.integration, self.records,
                self.committed, self.landings, self.plan_oid, self.planned)

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
    out = _continue(repo, kept, tip) if kept is not None else None
    if out is None:  # none kept, or the kept fold is not an ancestor of the tip: fold it all
        out = fold_all(repo, run, tip)
    out.tip = tip
    save(repo, out)
    return out


def fold_all(repo: Repo, run: str, tip: str) -> Folded:
    """The fold of ``run``'s ledger at ``tip`` from its first commit (no kept fold read)."""
    out = _continue(repo, Folded(run=run, tip=tip), tip)
    assert out is not None  # a fresh fold continues anything
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
#
# The file is JSON (a tool may write it: reading it runs nothing and a lie in it is only a
# wrong cache, as any other edit of it), laid out so that reading it makes few objects: the
# records by column, each column in the cheapest form that holds it exactly (the one value of
# every row; a most common value and the rows that differ; strings or ints joined into one
# string that one ``split`` cuts), and the plan's order as one joined string. Anything that
# does not decode to exactly what was written (a column of another length, a value of a type
# its field cannot have) makes the whole file ignored.

SEP = "\n"  # joins a string column: no workstream id, state, reason or oid holds one
_STR, _INT, _BOOL = (str,), (int,), (bool,)
_OPT_STR, _OPT_INT = (str, type(None)), (int, type(None))
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "ws": _STR, "state": _STR, "attempt": _OPT_INT, "reason": _OPT_STR, "patch": _OPT_STR,
    "candidate": _OPT_STR, "started": _OPT_INT, "updated": _OPT_INT, "duration": _OPT_INT,
    "ref": _OPT_STR, "target": _OPT_STR, "collected": _BOOL, "landed": _BOOL,
    "changes_checks": _BOOL, "blocked_by": _OPT_STR}
_COLUMN_TYPES = [FIELD_TYPES[name] for name in _REC_FIELDS]


def _typed(v: Any, types: tuple[type, ...]) -> bool:
    return type(v) in types  # exact: a bool is no int here, nor an int a bool


def encode_column(values: list[Any]) -> list[Any]:
    """The cheapest of ``["c", v]`` (every row ``v``), ``["x", v, {row: other}]`` (most rows
    ``v``), ``["s", "a\\nb"]`` (strings without SEP), ``["i", "1 2"]`` (ints) or ``["l",
    [...]]`` (anything)."""
    if not values:
        return ["l", []]
    first = values[0]
    if all(v is first or (type(v) is type(first) and v == first) for v in values):
        return ["c", first]
    if all(type(v) is str and SEP not in v for v in values) and \
            len({*values}) * 4 > len(values):
        return ["s", SEP.join(values)]
    if all(type(v) is int for v in values) and len({*values}) * 4 > len(values):
        return ["i", " ".join(map(str, values))]
    counts: dict[Any, int] = {}
    for v in values:
        if type(v) in (str, int, bool, type(None)):
            key = (type(v), v)
            counts[key] = counts.get(key, 0) + 1  # type: ignore[index]
    if counts:
        (kind, common), n = max(counts.items(), key=lambda kv: kv[1])  # type: ignore[misc]
        if n * 2 > len(values):
            return ["x", common, {str(i): v for i, v in enumerate(values)
                                  if type(v) is not kind or v != common}]
    return ["l", list(values)]


def decode_column(col: Any, n: int, types: tuple[type, ...]) -> list[Any]:
    """``encode_column``'s ``values`` back; ValueError when ``col`` is not ``n`` values of
    ``types`` in one of its forms."""
    if not isinstance(col, list) or not col or not isinstance(col[0], str):
        raise ValueError("column")
    kind = col[0]
    if kind == "c" and len(col) == 2 and _typed(col[1], types):
        return [col[1]] * n
    if kind == "s" and len(col) == 2 and str in types and isinstance(col[1], str):
        out: list[Any] = col[1].split(SEP) if n else []
    elif kind == "i" and len(col) == 2 and int in types and isinstance(col[1], str):
        out = list(map(int, col[1].split(" "))) if n else []
    elif kind == "x" and len(col) == 3 and _typed(col[1], types) and isinstance(col[2], dict):
        out = [col[1]] * n
        for row, v in col[2].items():
            i = int(row)
            if not 0 <= i < n or row != str(i) or not _typed(v, types):
                raise ValueError("column")
            out[i] = v
        return out
    elif kind == "l" and len(col) == 2 and isinstance(col[1], list):
        out = col[1]
        if not all(type(v) in types for v in out):
            raise ValueError("column")
    else:
        raise ValueError("column")
    if len(out) != n:
        raise ValueError("column")
    return out


def to_json(f: Folded) -> dict[str, Any]:
    recs = list(f.records.values())
    return {"version": VERSION, "run": f.run, "tip": f.tip, "root": f.root, "count": f.count,
            "base": f.base, "target": f.target, "based": f.based, "started": f.started,
            "updated": f.updated, "finished": f.finished, "integration": f.integration,
            "fields": _REC_FIELDS, "n": len(recs),
            "columns": [encode_column([getattr(r, name) for r in recs])
                        for name in _REC_FIELDS],
            "committed": _committed_columns(f.committed),
            "landings": [[x.seq, x.branch, x.landed, x.partial] for x in f.landings],
            "plan_oid": f.plan_oid, "planned": encode_column(f.planned),
            "planned_n": len(f.planned)}


def _committed_columns(committed: dict[str, list[list[int | None]]]) -> dict[str, Any]:
    """``Folded.committed`` by column: a workstream per span (a workstream committed twice,
    after a rollback and a retry, appears twice, in order)."""
    names = [ws for ws, spans in committed.items() for _ in spans]
    spans = [s for v in committed.values() for s in v]
    return {"n": len(names), "ws": encode_column(names),
            "since": encode_column([s[0] for s in spans]),
            "until": encode_column([s[1] for s in spans])}


def _committed_names(d: Any) -> list[str]:
    """The workstream column of ``_committed_columns``, the other two checked so that
    ``_committed_of`` cannot fail on them (an int column by one regular expression, not
    decoded); ValueError/TypeError/KeyError when ``d`` is not what that writes."""
    if not isinstance(d, dict) or len(d) != 4 or type(d["n"]) is not int:
        raise ValueError("committed")
    n = d["n"]
    for key, types in (("since", _INT), ("until", _OPT_INT)):
        col = d[key]
        if isinstance(col, list) and len(col) == 2 and col[0] == "i":
            if not isinstance(col[1], str) or not (_INTS.fullmatch(col[1]) or not n) or \
                    col[1].count(" ") + 1 != max(n, 1):
                raise ValueError("committed")
        else:
            decode_column(col, n, types)
    return decode_column(d["ws"], n, _STR)


_INTS = re.compile(r"-?[0-9]{1,30}(?: -?[0-9]{1,30})*")  # what ``int`` reads, as written


def _committed_of(d: Any) -> dict[str, list[list[int | None]]]:
    """``_committed_columns`` back (``d`` passed ``_committed_names``)."""
    n = d["n"]
    names = decode_column(d["ws"], n, _STR)
    since = decode_column(d["since"], n, _INT)
    until = decode_column(d["until"], n, _OPT_INT)
    if len(set(names)) == n:  # each committed once: the common case, one comprehension
        return {ws: [[s, u]] for ws, s, u in zip(names, since, until, strict=True)}
    out: dict[str, list[list[int | None]]] = {}
    for ws, s, u in zip(names, since, until, strict=True):
        out.setdefault(ws, []).append([s, u])
    return out


def from_json(d: dict[str, Any], run: str) -> Folded | None:
    if d.get("version") != VERSION or d.get("run") != run or d.get("fields") != _REC_FIELDS:
        return None
    n = d["n"]
    columns = d["columns"]
    if type(n) is not int or not isinstance(columns, list) or \
            len(columns) != len(_REC_FIELDS):
        return None
    try:
        cols = [decode_column(c, n, t) for c, t in zip(columns, _COLUMN_TYPES, strict=True)]
        committed = d["committed"]
        committed_names = set(_committed_names(committed))
        planned = decode_column(d["planned"], d["planned_n"], _STR) \
            if type(d["planned_n"]) is int else None
    except (ValueError, TypeError):
        return None
    if planned is None:
        return None
    f = Folded(run=run, tip=str(d["tip"]), root=d["root"], count=int(d["count"]),
               base=d["base"], target=d["target"], based=bool(d["based"]),
               started=d["started"], updated=d["updated"], finished=bool(d["finished"]),
               integration=d["integration"], committed_columns=committed,
               landings=[Landing(int(s), b, la, p) for s, b, la, p in d["landings"]],
               plan_oid=d["plan_oid"], planned=planned)
    f.records = {r.ws: r for r in map(WsRecord, *cols)}
    if len(f.records) != n or not committed_names <= f.records.keys():
        return None
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
