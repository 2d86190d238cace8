"""Journaled moves of a run's target branch (``uet land``, ``uet rollback``) and their recovery.

Moving a branch that is checked out changes three things git cannot change in one step: the
ref, and the index and files of each checkout. A process killed in between (kill -9, Ctrl-C,
power loss) used to leave ``index.lock`` and a half-written checkout, which every later attempt
took for the user's own changes. So every move is journaled in the run's ledger:

1. ``run: land-intent`` (``run: rollback-intent``): ``Uet-Branch`` (the target),
   ``Uet-Previous`` (its value now), ``Uet-Landed`` (the value it will hold; a rollback's is
   ``Uet-Restored``), ``Uet-Pid``/``Uet-Pid-Start``/``Uet-Host`` (the process that moves it) and
   ``Uet-Checkouts`` (a JSON list of the checkouts of the target), recorded before any checkout
   is touched;
2. ``branch.fast_forward``: a compare-and-swap on the ref, each checkout updated the way
   ``git merge --ff-only`` would, unrelated local changes kept byte for byte;
3. the closing event, naming the intent in ``Uet-Intent``: ``run: land`` / ``run: rollback``
   when the target moved, ``run: land-aborted`` / ``run: rollback-aborted`` when it did not.

``recover_landing`` finds an intent no closing event answers (the process died between 1 and
3), lets ``branch.recover`` put the ref and every checkout fully at one side (a lock file is
removed only when the recorded process is gone), and records the closing event that says
where the target ended up. ``uet land``, ``uet rollback`` and ``uet resume`` call it first.
"""

from __future__ import annotations

import json
import os
import socket
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.engine.context import crash_point
from uet_git.errors import UetError
from uet_git.gitrepo import branch
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger

LAND_EVENT = "run: land"
ROLLBACK_EVENT = "run: rollback"
INTENT = {"land": "run: land-intent", "rollback": "run: rollback-intent"}
DONE = {"land": LAND_EVENT, "rollback": ROLLBACK_EVENT}
ABORTED = {"land": "run: land-aborted", "rollback": "run: rollback-aborted"}
# The trailer that names the value the target moves to, per kind of move.
NEW_KEY = {"land": "Uet-Landed", "rollback": "Uet-Restored"}

# Ledger sessions (writers holding the run's lock) known to have no open intent: every move
# after the first check is this process's own and is closed before the lock is released, so
# ``--land continuous`` does not read the whole ledger again after each commit.
_settled: weakref.WeakSet[Ledger] = weakref.WeakSet()


def short(oid: str | None) -> str:
    return (oid or "-")[:12]


def branch_ref(target: str) -> str:
    return target if target.startswith("refs/") else f"refs/heads/{target}"


def branch_name(target: str) -> str:
    return target.removeprefix("refs/heads/")


@dataclass(frozen=True)
class Intent:
    """A recorded ``run: KIND-intent``: the target ``branch`` moves ``previous`` -> ``new``."""

    oid: str  # the ledger commit
    kind: str  # land | rollback
    branch: str
    previous: str
    new: str
    trailers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return branch_ref(self.branch)


@dataclass
class Move:
    """What ``journaled_move`` did: ``moved``, or why not (``blocked``: the checkouts' state
    refused it before anything was recorded; otherwise a lost race or a failed update)."""

    moved: bool
    problem: str | None = None
    blocked: bool = False
    updated: list[Path] = field(default_factory=list)
    intent: str | None = None  # the intent's ledger commit (None when blocked)
    note: str | None = None  # what a checkout kept of the user's (a backward move)


# --------------------------------------------------------------------------- who moves it


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22): with
    the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _owner_trailers() -> dict[str, str]:
    pid = os.getpid()
    out = {"Uet-Pid": str(pid), "Uet-Host": socket.gethostname()}
    start = _start_time(pid)
    if start:
        out["Uet-Pid-Start"] = start
    return out


def owner_gone(trailers: Mapping[str, str]) -> bool:
    """True when the process that recorded an intent has certainly ended, so what it left
    (``index.lock``) is a leftover. Unknown (another host, no pid) counts as alive."""
    if trailers.get("Uet-Host") != socket.gethostname():
        return False
    try:
        pid = int(trailers.get("Uet-Pid", ""))
    except ValueError:
        return False
    if pid == os.getpid():
        return True  # this process is not inside a move: its own earlier move is over
    recorded = trailers.get("Uet-Pid-Start")
    now = _start_time(pid)
    if now is not None:
        return recorded is not None and now != recorded  # alive, unless the pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


# --------------------------------------------------------------------------- the journal


def open_intent(repo: Repo, run: str) -> Intent | None:
    """The run's last intent when no closing event answers it (an interrupted move)."""
    return _open_intent_in(query.read_ledger(repo, run).events)


def _open_intent_in(events: Sequence[query.Event]) -> Intent | None:
    last: Intent | None = None
    closed: set[str] = set()
    for e in events:
        if e.ws is not None:
            continue
        for kind, subject in INTENT.items():
            if e.subject == subject:
                t = e.trailers
                prev, new = t.get("Uet-Previous"), t.get(NEW_KEY[kind])
                if prev and new:
                    last = Intent(e.oid, kind, t.get("Uet-Branch", ""), prev, new, dict(t))
        if e.subject in (*DONE.values(), *ABORTED.values()) and e.trailers.get("Uet-Intent"):
            closed.add(e.trailers["Uet-Intent"])
    if last is None or last.oid in closed or not last.branch:
        return None
    return last


def blockers_line(lines: list[str], limit: int = 3) -> str:
    shown = "; ".join(lines[:limit])
    return shown + (f"; and {len(lines) - limit} more" if len(lines) > limit else "")


def interrupted_elsewhere(repo: Repo, ref: str, run: str) -> str | None:
    """The newest other run with an interrupted move of ``ref`` (its checkout may hold that
    half-done landing: ``uet land OTHER`` finishes or undoes it), or None. Read only when a
    move is refused, so the cost of reading every ledger is paid on the failure path."""
    for info in reversed(query.list_runs(repo)):
        if info.run == run:
            continue
        intent = open_intent(repo, info.run)
        if intent is not None and intent.ref == ref:
            return info.run
    return None


def journaled_move(repo: Repo, ledger: Ledger, kind: str, ref: str, old: str, new: str, *,
                   body: str, trailers: Mapping[str, str] | None = None) -> Move:
    """Move ``ref`` from ``old`` to ``new`` and every checkout of it, journaled (module doc).
    The caller records the closing ``DONE[kind]`` event (with ``Uet-Intent``) when moved."""
    # ``ref`` was just read at ``old`` by the caller. Each line names its checkout already.
    looked = branch.look(repo, ref, old, new)
    checkouts = looked.checkouts
    if looked.problems:
        problem = blockers_line(looked.problems)
        other = interrupted_elsewhere(repo, ref, ledger.run)
        if other is not None:
            problem += (f"; run {other} was interrupted while moving {branch_name(ref)}: "
                        f"`uet land {other}` finishes or undoes that first")
        return Move(False, problem, blocked=True)
    _settled.discard(ledger)
    intent = ledger.event(INTENT[kind], body, trailers={
        "Uet-Branch": branch_name(ref),
        "Uet-Previous": old,
        NEW_KEY[kind]: new,
        "Uet-Checkouts": json.dumps([str(c) for c in checkouts]),
        **_owner_trailers(),
        **(trailers or {}),
    })
    crash_point(f"{kind}:intent")
    note = None
    try:
        if is_ancestor(repo, old, new):
            ff = branch.fast_forward(repo, ref, old, new, looked=looked)
        else:
            ff, note = _move_back(repo, kind, ref, old, new, checkouts)
    except UetError as exc:
        # The move failed half-way: put everything on one side now rather than at the next
        # command, and say what was done.
        done = recover(repo, ledger)
        return Move(False, f"{exc}" + (f"; {done.message}" if done else ""), intent=intent)
    if not ff.moved:
        ledger.event(ABORTED[kind], ff.problem or "the target did not move",
                     trailers={"Uet-Branch": branch_name(ref), "Uet-Intent": intent})
        _settled.add(ledger)
        return Move(False, ff.problem or f"{ref} did not move", intent=intent)
    crash_point(f"{kind}:moved")
    return Move(True, updated=list(ff.updated_checkouts), intent=intent, note=note)


def _move_back(repo: Repo, kind: str, ref: str, old: str, new: str, checkouts: list[Path]
               ) -> tuple[branch.FFResult, str | None]:
    """A move to a commit that is not a descendant (a rollback by reset), which
    ``branch.fast_forward`` refuses: the ref moves with its compare-and-swap first, then every
    checkout is brought to it the way a recovery does (only paths holding either side's
    version are written, so the user's own edits stay). The intent is recorded already, so a
    kill in between is finished by the next command."""
    try:
        repo.transaction().update(ref, new, old).commit()
    except RefConflict:
        now = repo.read_ref(ref)
        return branch.FFResult(False, [], f"{ref} moved to {short(now)} while it was being "
                                          f"updated (expected {short(old)})"), None
    crash_point(f"{kind}:ref-moved")
    did = branch.recover(repo, ref, old, new, lock_owner_dead=False, checkouts=checkouts)
    kept = did if any(w in did for w in (" kept ", " held ", " left ")) else None
    return branch.FFResult(True, checkouts, None), kept


def record_landing(ledger: Ledger, target: str, previous: str, landed: str, body: str,
                   intent: str | None = None, *, trailers: Mapping[str, str] | None = None
                   ) -> str:
    trailers = {"Uet-Branch": branch_name(target), "Uet-Landed": landed,
                "Uet-Previous": previous, **(trailers or {})}
    if intent:
        trailers["Uet-Intent"] = intent
    oid = ledger.event(LAND_EVENT, body, trailers=trailers)
    if intent:
        _settled.add(ledger)
    return oid


def record_rollback(ledger: Ledger, *, target: str, method: str, previous: str, restored: str,
                    detail: str, intent: str | None = None) -> list[str]:
    """The ``run: rollback`` event, then every committed workstream becomes rolled-back;
    returns those workstreams."""
    trailers = {"Uet-Branch": branch_name(target), "Uet-Rollback": method,
                "Uet-Previous": previous, "Uet-Restored": restored}
    if intent:
        trailers["Uet-Intent"] = intent
    ledger.event(ROLLBACK_EVENT, detail, trailers=trailers)
    if intent:
        _settled.add(ledger)
    rolled: list[str] = []
    for ws, rec in sorted(ledger.states().items()):
        if rec.state != "committed":
            continue
        ledger.record(ws, "rolled-back", attempt=rec.attempt or 1, patch=rec.patch,
                      candidate=rec.candidate, summary=f"run {ledger.run} rolled back: {detail}")
        rolled.append(ws)
    return rolled


@dataclass(frozen=True)
class Recovered:
    """What ``recover`` did with an interrupted move: ``finished`` (the target holds the new
    value, the closing event is recorded) or undone; ``message`` says it in one line."""

    intent: Intent
    finished: bool
    message: str


def recover_intent(repo: Repo, ledger: Ledger, intent: Intent) -> Recovered:
    """Finish or undo the interrupted move ``intent`` and record which."""
    what = "landing" if intent.kind == "land" else "rollback"
    did = branch.recover(repo, intent.ref, intent.previous, intent.new,
                         lock_owner_dead=owner_gone(intent.trailers))
    now = repo.read_ref(intent.ref)
    move = f"{intent.branch} {short(intent.previous)} -> {short(intent.new)}"
    if now == intent.new:
        body = f"finished an interrupted {what} ({move}): {did}"
        if intent.kind == "land":
            record_landing(ledger, intent.branch, intent.previous, intent.new, body, intent.oid)
        else:
            record_rollback(ledger, target=intent.branch,
                            method=intent.trailers.get("Uet-Rollback", "reset"),
                            previous=intent.previous, restored=intent.new, detail=body,
                            intent=intent.oid)
        return Recovered(intent, True, body)
    body = f"undid an interrupted {what} ({move}): {did}"
    ledger.event(ABORTED[intent.kind], body,
                 trailers={"Uet-Branch": intent.branch, "Uet-Intent": intent.oid})
    _settled.add(ledger)
    return Recovered(intent, False, body)


def recover(repo: Repo, ledger: Ledger) -> Recovered | None:
    """Finish or undo the run's interrupted landing or rollback, if there is one: the target
    and every checkout of it end as git leaves them after a completed or a never-started
    ``merge --ff-only``."""
    if ledger in _settled:
        return None
    events = query.read_ledger(repo, ledger.run).events  # read once for both questions
    intent = _open_intent_in(events)
    if intent is None:
        done = _finish_rollback(ledger, _unfinished_in(events))
        _settled.add(ledger)
        return done
    return recover_intent(repo, ledger, intent)


def unfinished_rollback(repo: Repo, run: str) -> tuple[Intent, list[str]] | None:
    """A rollback killed while it recorded the workstreams rolled-back (after its
    ``run: rollback`` event, which closes the journal: the target is back already): that
    event as an ``Intent`` (its ``Uet-Intent``, else itself) and the workstreams still
    ``committed`` by a transition older than it, in order. None when there is none (or a
    landing came after the rollback)."""
    return _unfinished_in(query.read_ledger(repo, run).events)


def _unfinished_in(events: Sequence[query.Event]) -> tuple[Intent, list[str]] | None:
    last: int | None = None
    for i, e in enumerate(events):
        if e.ws is None and e.subject == ROLLBACK_EVENT:
            last = i
        elif e.ws is None and e.subject == LAND_EVENT:
            last = None
    if last is None:
        return None
    state: dict[str, tuple[int, str | None]] = {}
    for i, e in enumerate(events):
        if e.is_transition and e.ws is not None:
            state[e.ws] = (i, e.to)
    left = sorted(ws for ws, (i, to) in state.items() if to == "committed" and i < last)
    if not left:
        return None
    e = events[last]
    t = e.trailers
    intent = Intent(t.get("Uet-Intent") or e.oid, "rollback", t.get("Uet-Branch", ""),
                    t.get("Uet-Previous", ""), t.get("Uet-Restored", ""), dict(t))
    return intent, left


def finish_rollback(repo: Repo, ledger: Ledger) -> Recovered | None:
    """Record rolled-back the workstreams an interrupted rollback did not get to
    (``unfinished_rollback``): its target move and ``run: rollback`` event are recorded
    already, so nothing else moves. None when there is nothing to finish."""
    return _finish_rollback(ledger, unfinished_rollback(repo, ledger.run))


def _finish_rollback(ledger: Ledger, found: tuple[Intent, list[str]] | None
                     ) -> Recovered | None:
    if found is None:
        return None
    intent, left = found
    body = (f"finished an interrupted rollback ({intent.branch} {short(intent.previous)} -> "
            f"{short(intent.new)}): {len(left)} workstream{'s' * (len(left) != 1)} "
            f"rolled-back ({', '.join(left)})")
    records = ledger.states()
    for ws in left:
        rec = records[ws]
        if rec.state != "committed":
            continue  # recorded meanwhile (another process holds no lock: we do)
        ledger.record(ws, "rolled-back", attempt=rec.attempt or 1, patch=rec.patch,
                      candidate=rec.candidate, summary=f"run {ledger.run} rolled back: {body}")
    return Recovered(intent, True, body)


def recover_landing(repo: Repo, ledger: Ledger) -> str | None:
    """``recover`` for callers that only report: what was done (one line), or None when no
    move was pending. ``uet land``, ``uet rollback`` and ``uet resume`` call it first."""
    done = recover(repo, ledger)
    return None if done is None else done.message


def landing_blockers(repo: Repo, target: str) -> list[str]:
    """What in the checkouts of ``target`` will stop any landing on it (an operation in
    progress, a held ``index.lock``), one line each; for the warning at run start. Local
    changes are judged at landing time, against the paths the landing changes."""
    ref = branch_ref(target)
    head = repo.read_ref(ref)
    if head is None:
        return []
    return branch.look(repo, ref, head, head).problems
