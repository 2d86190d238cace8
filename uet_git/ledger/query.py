"""Read the ledger: runs, a run's status, its history and evidence. Readers never lock.

Where things come from (DESIGN.md, "The ledger in git"):
- the current state of a workstream is the state ref that exists for it
  (``refs/uet/<state>/RUN/WS``), read with ONE ``git for-each-ref`` whose patterns name only this
  run's directories, so the cost does not grow with the patches of other runs;
- reasons, attempts, patch/candidate oids and timings come from the trailers of the run's ledger
  commits (``refs/uet/ledger/RUN``), walked first-parent with pygit2 from the tip;
- the plan (``plan.json``) and evidence (``evidence/WS/ATTEMPT/NAME``) are blobs in the tree of
  the ledger tip (each ledger commit's tree carries everything before it).

A workstream whose state ref was removed by ``uet gc`` keeps the state of its last ledger
transition (``WsRecord.collected`` is then true).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.ledger.layout import ROOT, check_run_id, integration_ref, ledger_ref, state_prefixes
from uet_git.ledger.states import STATES

# Not a ledger state: a workstream of the plan that has no ledger transition yet.
PENDING = "pending"
PREFIX = ROOT
_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)\s*:\s?(.*)$")
_NONE_VALUES = {"", "none", "-", "null", "(none)", "new"}


# --------------------------------------------------------------------------- data


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
        return _oid_or_none(self.trailers.get("Uet-Patch"))

    @property
    def candidate(self) -> str | None:
        return _oid_or_none(self.trailers.get("Uet-Candidate"))

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
        }


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
    counts: dict[str, int]

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
            "counts": dict(self.counts),
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
            "counts": dict(self.counts),
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

    @property
    def landed(self) -> bool:
        return bool(self.run_events("run: land"))


# --------------------------------------------------------------------------- helpers


def iso(t: int | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _oid_or_none(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip()
    return None if v.lower() in _NONE_VALUES else v


def _state_or_none(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip()
    return None if v.lower() in _NONE_VALUES else v


_PARA_RE = re.compile(r"\n[ \t]*\n")


def _trailer_block(block: str) -> dict[str, str]:
    """``{key: value}`` if every line of ``block`` is a trailer (or a continuation), else {}."""
    out: dict[str, str] = {}
    for line in block.splitlines():
        m = _TRAILER_RE.match(line)
        if m is None:
            if line[:1].isspace() and out:  # a continuation line
                key = next(reversed(out))
                out[key] = f"{out[key]} {line.strip()}"
                continue
            return {}  # not a trailer block
        out[m[1]] = m[2].strip()
    return out


def _parse_message(message: str) -> tuple[str, str, dict[str, str]]:
    """(subject, human body without the trailer block, trailers)."""
    subject, _, rest = message.strip().partition("\n")
    paragraphs = [p.strip() for p in _PARA_RE.split(rest.strip())] if rest.strip() else []
    paragraphs = [p for p in paragraphs if p]
    trailers = _trailer_block(paragraphs[-1]) if paragraphs else {}
    if trailers:
        paragraphs.pop()
    return subject.strip(), "\n\n".join(paragraphs), trailers


def parse_trailers(message: str) -> dict[str, str]:
    """The trailers of a commit message: ``Key: value`` lines of its last paragraph after the
    subject (the block ``git interpret-trailers --parse`` reads for messages uet writes). A key
    given twice keeps the last value."""
    return _parse_message(message)[2]


_SUBJECT_RE = re.compile(r"^(?P<ws>\S+): (?P<frm>\S+) -> (?P<to>\S+)")


def event_from_commit(oid: str, commit_time: int, message: str) -> Event:
    subject, summary, trailers = _parse_message(message)
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


def for_each_ref(repo: Repo, patterns: Iterable[str]) -> list[tuple[str, str]]:
    """``[(refname, oid)]`` for refs matching any pattern (prefixes up to a slash), one git
    process. ``%(objectname)`` does not read the object, so this stays cheap."""
    pats = list(patterns)
    if not pats:
        return []
    out = repo.git("for-each-ref", "--format=%(objectname) %(refname)", *pats).stdout
    refs: list[tuple[str, str]] = []
    for line in out.decode().splitlines():
        oid, _, name = line.partition(" ")
        if name:
            refs.append((name, oid))
    return refs


def run_refs(repo: Repo, run: str) -> dict[str, str]:
    """Every ref of one run except its patches: ledger, integration and state refs."""
    pats = [ledger_ref(run), integration_ref(run), *state_prefixes(run)]
    return dict(for_each_ref(repo, pats))


def state_refs_of(refs: Mapping[str, str], run: str) -> dict[str, list[tuple[str, str, str]]]:
    """``{ws: [(state, refname, oid), ...]}`` from a ref listing (normally one per ws)."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for name, oid in refs.items():
        parts = name[len(PREFIX):].split("/") if name.startswith(PREFIX) else []
        if len(parts) == 3 and parts[0] in STATES and parts[1] == run:
            out.setdefault(parts[2], []).append((parts[0], name, oid))
    return out


def read_ledger(repo: Repo, run: str, tip: str | None = None) -> LedgerLog:
    """Walk ``refs/uet/ledger/RUN`` first-parent from its tip; raise UetError if no such run."""
    check_run_id(run)
    if tip is None:
        tip = repo.read_ref(ledger_ref(run))
        if tip is None:
            raise UetError(f"no run {run!r} in this repository (no {ledger_ref(run)})")
    import pygit2  # local: keeps the import light for callers that never walk

    pg = repo.pg
    walker = pg.walk(pygit2.Oid(hex=tip), pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    events: list[Event] = []
    for commit in walker:
        events.append(event_from_commit(str(commit.id), commit.commit_time, commit.message))
    events.reverse()
    base = target = None
    for e in events:
        if e.ws is None and ("Uet-Base" in e.trailers or e.subject.startswith("run: start")):
            base = _oid_or_none(e.trailers.get("Uet-Base"))
            target = _oid_or_none(e.trailers.get("Uet-Target"))
            break
    return LedgerLog(run=run, tip=tip, events=events, base=base, target=target)


def read_tip_blob(repo: Repo, tip: str, path: str) -> bytes | None:
    """A blob at ``path`` in the tree of commit ``tip`` (None if absent)."""
    pg = repo.pg
    try:
        tree = pg[tip].peel(_tree_type())
        obj = tree[path]
    except (KeyError, ValueError):
        return None
    blob = pg[obj.id]
    data = getattr(blob, "data", None)
    return data if isinstance(data, bytes) else None


def _tree_type() -> Any:
    import pygit2

    return pygit2.Tree


def read_plan(repo: Repo, log: LedgerLog) -> dict[str, Any] | None:
    """``plan.json`` of the run: from the ledger tip, else from the root ledger commit."""
    for oid in (log.tip, log.events[0].oid if log.events else None):
        if oid is None:
            continue
        data = read_tip_blob(repo, oid, "plan.json")
        if data is not None:
            try:
                plan = json.loads(data)
            except ValueError:
                return None
            return plan if isinstance(plan, dict) else None
    return None


def plan_deps(plan: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """``{ws: [deps]}`` in plan order from the plan JSON shapes uet writes (``uet plan --json``
    nodes, a ``deps`` mapping, or a ``workstreams`` list)."""
    if not plan:
        return {}
    deps: dict[str, list[str]] = {}
    nodes = plan.get("nodes")
    if isinstance(nodes, list):
        for n in nodes:
            if isinstance(n, dict) and isinstance(n.get("id"), str):
                deps[n["id"]] = [str(d) for d in n.get("depends_on") or n.get("deps") or []]
    raw = plan.get("deps")
    if isinstance(raw, dict):
        for k, v in raw.items():
            deps.setdefault(str(k), [str(d) for d in v or []])
    wss = plan.get("workstreams")
    if isinstance(wss, list):
        for w in wss:
            if isinstance(w, dict) and isinstance(w.get("id"), str):
                deps.setdefault(w["id"], [str(d) for d in w.get("depends_on") or []])
            elif isinstance(w, str):
                deps.setdefault(w, [])
    elif isinstance(wss, dict):
        for k, w in wss.items():
            d = w.get("depends_on") if isinstance(w, dict) else None
            deps.setdefault(str(k), [str(x) for x in d or []])
    for key in ("order", "ids"):
        order = plan.get(key)
        if isinstance(order, list):
            ordered = {str(i): deps.get(str(i), []) for i in order}
            ordered.update({k: v for k, v in deps.items() if k not in ordered})
            deps = ordered
            break
    return deps


# --------------------------------------------------------------------------- runs


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
        out.append(RunInfo(
            run=run, base=log.base, target=log.target, started=log.started,
            updated=log.updated, ledger=log.tip, finished=log.finished, landed=log.landed,
            counts={s: c[s] for s in STATES if c.get(s)},
        ))
    return out


# --------------------------------------------------------------------------- status


def ws_record(ws: str, transitions: list[Event]) -> WsRecord:
    """The record of one workstream from its transitions (oldest first). Patch and candidate
    carry forward within an attempt; a new attempt starts without a candidate."""
    rec = WsRecord(ws=ws, state=PENDING)
    for e in transitions:
        if e.attempt is not None and e.attempt != rec.attempt:
            if rec.attempt is not None:
                rec.patch = rec.candidate = None
            rec.attempt = e.attempt
        rec.patch = e.patch or rec.patch
        rec.candidate = e.candidate or rec.candidate
        rec.state = e.to or rec.state
        rec.reason = e.reason
        if rec.started is None:
            rec.started = e.time
        rec.updated = e.time
    if rec.started is not None and rec.updated is not None:
        rec.duration = rec.updated - rec.started
    return rec


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
    order = list(plan_deps(read_plan(repo, log)))
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
    return RunStatus(
        run=run, base=log.base, target=log.target, started=log.started, updated=log.updated,
        integration=refs.get(integration_ref(run)), finished=log.finished, landed=log.landed,
        workstreams=records, counts=ordered_counts,
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


# --------------------------------------------------------------------------- evidence


def _evidence_tree(repo: Repo, commit: str, ws: str, attempt: int) -> Any | None:
    import pygit2

    try:
        tree = repo.pg[commit].peel(pygit2.Tree)
        entry = tree[f"evidence/{ws}/{attempt}"]
    except (KeyError, ValueError):
        return None
    obj = repo.pg[entry.id]
    return obj if isinstance(obj, pygit2.Tree) else None


def evidence_attempts(repo: Repo, run: str, ws: str) -> list[int]:
    import pygit2

    log = read_ledger(repo, run)
    try:
        tree = repo.pg[log.tip].peel(pygit2.Tree)
        sub = repo.pg[tree[f"evidence/{ws}"].id]
    except (KeyError, ValueError):
        return []
    return sorted(int(e.name) for e in sub if e.name.isdigit())  # type: ignore[union-attr]


def evidence(
    repo: Repo, run: str, ws: str, attempt: int | None = None, name: str | None = None,
) -> list[str] | bytes:
    """Without ``name``: the evidence names of an attempt (default: the latest attempt of
    ``ws``), sorted. With ``name``: that blob's bytes. UetError when missing."""
    log = read_ledger(repo, run)
    if attempt is None:
        rec = ws_record(ws, log.transitions(ws))
        if rec.attempt is None:
            attempts = evidence_attempts(repo, run, ws)
            if not attempts:
                raise UetError(f"no workstream {ws!r} in the ledger of run {run}")
            attempt = attempts[-1]
        else:
            attempt = rec.attempt
    tree = _evidence_tree(repo, log.tip, ws, attempt)
    if tree is None:
        # Tolerate a ledger whose tips do not accumulate evidence: look in older commits.
        for e in reversed(log.events):
            tree = _evidence_tree(repo, e.oid, ws, attempt)
            if tree is not None:
                break
    if name is None:
        if tree is None:
            return []
        return sorted(_blob_paths(repo, tree, ""))
    if tree is not None:
        try:
            obj = repo.pg[tree[name].id]
        except (KeyError, ValueError):
            obj = None
        data = getattr(obj, "data", None)
        if isinstance(data, bytes):
            return data
    raise UetError(f"no evidence {name!r} for {ws} attempt {attempt} in run {run}")


def _blob_paths(repo: Repo, tree: Any, prefix: str) -> Iterable[str]:
    import pygit2

    for entry in tree:
        obj = repo.pg[entry.id]
        if isinstance(obj, pygit2.Tree):
            yield from _blob_paths(repo, obj, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}"


def now() -> int:
    return int(time.time())
