"""The single writer of a run's ledger: every state change is one atomic ref transaction.

A transition (``Ledger.record``) does, in this order:

1. check the move against ``states`` (the transition table and the attempt rules; an illegal
   one raises, nothing is written);
2. write the objects: evidence blobs, the new ledger tree (previous tree + ``evidence/WS/N/...``)
   and the ledger commit (subject ``WS: from -> to``, a short body, ``Uet-*`` trailers);
3. move the refs in ONE ``update-ref --stdin`` transaction, each with its old value: the ledger
   ref (CAS on the old tip), the old state ref (delete, CAS), the new state ref (create: must
   not exist), the attempt's patch ref (create, or verify when it exists), and the integration
   ref (CAS) when it moves;
4. check that what the refs now name exists (see "Concurrent git housekeeping").

A crash before step 3 leaves unreferenced objects and the old state; a crash of uet inside it
leaves the old state (git, in its own session, rolls the transaction back when its stdin closes
before ``commit``) or the new one (``commit`` had reached git, which finishes it). Never both,
never neither. Only a kill of git itself in the middle of its commit phase (SIGKILL of the whole
process group, power loss) can leave ref lock files and half-moved refs; ``Ledger.open`` then
removes the stale locks (``lock.py``) and makes the refs agree with the ledger
(``repair.py``), recording ``run: repair``.

One writer per run (``lock.RunLock``), with the CAS old values as the second line of defence.
Readers (``query.py``) never lock. Within a process the writer is thread-safe: one mutex
serialises transitions, and each thread writes objects through its own handle.

Concurrent git housekeeping (a user's ``git gc``/``pack-refs`` in the same repository):
- a held ref lock (``packed-refs.lock`` while ``pack-refs`` runs) is waited for, for up to
  ``LOCK_RETRY_SECONDS``; a lost compare-and-swap is never retried: this writer holds the
  run's lock, so it means the refs were moved behind its back;
- ``git gc --prune=now`` deletes what was unreachable when its walk began, so it can take
  objects written before the refs moved even after they moved: ``keepalive.Keepalive``
  looks after each ledger commit until it is safe and writes it again from memory when a
  prune took it (see there);
- a tool that deletes the run's refs (``git update-ref -d`` of ``refs/uet/*``) makes the next
  transaction lose its compare-and-swap: the writer then finds its own refs gone, creates them
  again from what it holds in memory (ledger tip, state refs, patches, integration), commits
  the transaction, and records a ``run: repair`` event saying so.

Cost per transition does not grow with the number of refs or runs: no ref is listed, the
transaction touches at most five loose refs, and the long-lived ``update-ref`` process
(``RefUpdater``) saves a fork+exec each time. Only the trees on the evidence path are
rewritten (``objects.build_tree``). A flat ``evidence/`` tree (one entry per workstream) would
grow with the run and be written again by every transition; runs of more than
``evidence.FANOUT_ABOVE`` workstreams fan it out (``evidence/_XY/WS/N``), so the trees a
transition writes stay a few KB at any size (see ``evidence.py``).

Durability (measured on this machine's ext4, 2 cores, medians): ref updates are fsynced
(``core.fsync=committed,reference``): +0.5 ms per transaction when idle, up to ~2.5 ms under
load, against ~0.1 ms without — kept, a transition costs ~2-4 ms either way. Objects are
written by libgit2, which does not fsync; fsyncing a transition's ~6 objects ourselves
measured ~9 ms (three times a whole transition), so it is not done. Objects are always written
before the refs that name them; after a power loss the filesystem decides, and ``uet fsck`` /
``git fsck`` report a ref to a lost object.

Fewer, shared transactions (group commit and chains). ``record`` and ``record_chain`` queue
their transitions (a ``Pending``); the first caller that finds the writer's mutex free is the
leader and writes EVERYTHING queued at that moment as one ref transaction (the integrator's
and the queue's ahead of the workers', each workstream's own in order), while the others wait
on the mutex and find theirs done; ``submit`` with ``done`` returns at once and a background
thread writes it (a worker's ``queued``: the worker's slot takes the next tool meanwhile;
``state``/``states`` wait for what is queued for the workstream they read, and run-level
writes and ``close`` write the queue first). In one group, every transition is still ONE
ledger commit with all its trailers and evidence, the parent of the next (the history reads
exactly as if each had been committed alone), and the transaction moves the ledger ref from
the old tip to the last of them, each workstream's state ref from its state before the group
to its state after it, creates the attempts' patch refs and fast-forwards the integration ref
to the last tip recorded, every one with its old value. A transition that is illegal in the
state the ones before it leave fails alone, before anything is committed (its objects are
left unreferenced, as after ``after-objects``); a failed transaction is tried again one
request at a time, so a failure reaches only the callers it concerns.

Why this cannot lose or misstate anything after a crash at any point, e.g. for ``created +
validated`` of a worker or ``applied + verified + committed`` of the integrator (the worker
path and the queue say which transitions are decided together: nothing runs between them
but in-memory checks, validation or the gate's tip comparison):
- the transaction is atomic, so a crash leaves either the state before the group (ledger ref
  at the old tip, the old state ref, no new patch ref, the integration ref unmoved) or the
  state after it; never an intermediate state's ref, never a ledger commit without its refs
  or a ref without its ledger commit. The old state is one a resume already handles: it is
  what a crash just before the first of those ``record`` calls left. The patch commit a
  ``created`` names is rooted by the worker's worktree HEAD until the transaction that creates
  its patch ref is durable (the worker waits for it before giving the worktree back), and the
  checks run again on it after a resume (``recheck_patch``);
- after it, every intermediate transition is in the history with its own trailers and
  evidence, and ``expected.expected_refs`` (repair, ``uet fsck``), which replays the history,
  derives exactly the refs the transaction left: one state ref per workstream (its last
  state), the patch refs of every attempt recorded, the last ``Uet-Integration``;
- a ``Uet-From`` always names the state the previous commit of that workstream left, so no
  transition is skipped or invented, and a ``committed`` still needs ``verified`` before it
  in the history (``states`` checks each step against the one before);
- a transition queued without waiting and not yet written when the process dies is simply not
  recorded: the workstream stays in its previous recorded state, which is what a crash during
  the work before it (acceptance) leaves today, and the next resume does that work again.
  Nothing that depends on it is recorded first: a reader of that workstream waits for it, and
  the transitions of one workstream keep their order in every group.
The crash points below fire for each workstream of a group (``after-prepare``/``after-commit``
when any of them is selected), so the crash tests see the same three moments.

Fault injection for the crash tests: ``UET_LEDGER_CRASH=POINT[:WS[@STATE]]`` makes the process
``os._exit(99)`` at POINT (``after-objects``, ``after-prepare``, ``after-commit``) of a
``record()`` (for WS only, if given; with ``@STATE`` only in the transaction that records WS's
move to STATE, e.g. ``after-prepare:a@committed`` inside ``applied -> verified -> committed``;
``run:rebase`` selects ``rebase_integration``). Unset, it
costs one dict lookup.

The integration ref only fast-forwards, with one exception: ``rebase_integration`` (``uet land
--rebase``) moves it onto a chain re-integrated on the target's new tip. That is the same kind
of transaction: objects first, then the ledger ref and the integration ref together, each with
its old value, and a ``run: rebase`` ledger commit whose ``Uet-Onto`` tells ``uet fsck`` where
the run's own commits now start and whose ``Uet-Integration`` records the new tip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.odb import (
    CommitInfo,
    MissingObject,
    get_commit,
    has_object,
    tree_of,
)
from uet_git.gitrepo.refs import RefConflict, RefTransaction, RefUpdater
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.trailers import format_message, one_line
from uet_git.ledger import layout
from uet_git.ledger.evidence import (
    FANOUT_ABOVE,
    MAX_EVIDENCE,
    evidence_files,
    evidence_prefix,
    fanned_out,
    truncate,
)
from uet_git.ledger.expected import GC_EVENT, disagreements, recorded_integration
from uet_git.ledger.keepalive import (
    PRUNED_RETRIES,
    Keepalive,
    Written,
    commit_keeping,
    pruned_object,
    pruning_gc,
    wait_for_gc,
)
from uet_git.ledger.lock import LedgerBusy, RunLock, clear_stale_ref_locks
from uet_git.ledger.log import PLAN_PATH, LedgerLog, WsRecord, plan_deps, read_ledger, ws_record
from uet_git.ledger.query import all_run_refs, state_refs_of
from uet_git.ledger.repair import REPAIR_EVENT, repair_refs
from uet_git.ledger.states import (
    CANDIDATE_STATES,
    KEEPS_CANDIDATE,
    PATCH_STATES,
    check_attempt,
    check_reason,
    check_transition,
)
from uet_git.ledger.words import plural

__all__ = ["MAX_EVIDENCE", "Ledger", "LedgerBusy", "Pending", "Step", "truncate"]

LOCK_RETRY_SECONDS = 5.0  # how long a transaction waits for a ref lock another git holds
CONFIG_PATH = "config.json"
RESERVED_TRAILERS = frozenset({
    "Uet-Run", "Uet-Workstream", "Uet-Attempt", "Uet-From", "Uet-To", "Uet-Patch",
    "Uet-Candidate", "Uet-Reason", "Uet-Base", "Uet-Target", "Uet-Integration",
    "Uet-Onto", "Uet-Previous-Integration",
})
REBASE_EVENT = "run: rebase"
# The crash-test key of ``rebase_integration`` (``UET_LEDGER_CRASH=POINT:run:rebase``); not a
# valid workstream id, so it never selects a ``record()``.
REBASE_CRASH_KEY = "run:rebase"
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


class _RunExists(UetError):
    """``Ledger.create`` with a run id that is taken (a fresh id is tried when none was given)."""


def _extra_trailers(trailers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in (trailers or {}).items():
        if not _TRAILER_KEY.match(k):
            raise UetError(f"bad trailer key {k!r}: expected letters, digits and '-'")
        if k in RESERVED_TRAILERS:
            raise UetError(f"trailer {k} is written by the ledger itself")
        out.append((k, one_line(v)))
    return out


def _crash_point(point: str, ws: str | None, tos: Sequence[str] = ()) -> None:
    spec = os.environ.get("UET_LEDGER_CRASH")
    if not spec:
        return
    want, _, only = spec.partition(":")
    only, _, to = only.partition("@")
    if want == point and (not only or only == ws) and (not to or to in tos):
        os._exit(99)


@dataclass(frozen=True)
class Step:
    """One transition of ``Ledger.record_chain`` (the arguments of ``Ledger.record``)."""

    to: str
    patch: str | None = None
    candidate: str | None = None
    reason: str | None = None
    summary: str = ""
    evidence: Mapping[str, bytes] | None = None
    integration: str | None = None
    trailers: Mapping[str, str] | None = None


class Pending:
    """Transitions of one workstream queued for the writer (``Ledger.submit``)."""

    def __init__(self, ws: str, steps: tuple[Step, ...], attempt: int, first: bool,
                 done: Callable[[list[str]], None] | None) -> None:
        self.ws, self.steps, self.attempt, self.first, self.done = ws, steps, attempt, first, done
        self.oids: list[str] | None = None
        self.error: BaseException | None = None
        self._event = threading.Event()

    @property
    def finished(self) -> bool:
        return self._event.is_set()

    def finish(self, oids: list[str]) -> None:
        self.oids = oids
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._event.set()

    def value(self) -> list[str]:
        """The ledger commits (raises what the writer raised for it)."""
        self._event.wait()
        if self.error is not None:
            raise self.error
        assert self.oids is not None
        return self.oids


@dataclass
class _Sim:
    """The writer's memory as the transitions prepared so far for one transaction leave it
    (overlays: only what they change)."""

    tip: str
    tree: str
    integration: str
    states: dict[str, WsRecord] = field(default_factory=dict)
    patches: dict[tuple[str, int], str] = field(default_factory=dict)  # patch refs to create
    verify: set[tuple[str, int]] = field(default_factory=set)  # patch refs to check

    def copy(self) -> _Sim:
        return replace(self, states=dict(self.states), patches=dict(self.patches),
                       verify=set(self.verify))


def _ordered(queue: list[Pending]) -> list[Pending]:
    """The queue in writing order: the integrator's (``first``) ahead of the workers', except
    behind an earlier request of the same workstream (its transitions stay in order)."""
    behind = set()
    hoisted, rest = [], []
    for req in queue:
        if req.first and req.ws not in behind:
            hoisted.append(req)
        else:
            rest.append(req)
            behind.add(req.ws)
    return hoisted + rest


def _background_writer(ref: weakref.ReferenceType[Ledger]) -> None:
    """The thread that writes what callers queued without waiting; ends when idle (0.5 s)
    and is started again by the next such call. Holds its ledger only while it writes."""
    while True:
        self = ref()
        if self is None:
            return
        with self._qlock:
            if not self._queue:
                self._wake.wait(0.5)
            if not self._queue or self._closed:
                self._writer = None
                return
        with self._mutex:
            if not self._writing:
                self._drain()
        del self


class Ledger:
    """The writer of one run. Get one with ``Ledger.create`` or ``Ledger.open``."""

    def __init__(self, repo: Repo, run: str, lock: RunLock) -> None:
        self.repo = repo
        self.run = run
        self._lock = lock
        self._mutex = threading.RLock()
        self._updater = RefUpdater(repo)
        # A Ledger dropped without close() must not leave its git process behind.
        weakref.finalize(self, self._updater.close)
        self._closed = False
        self.base: str = ""
        self.target: str | None = None
        self.plan: dict[str, Any] = {}
        self._tip = ""
        self._tree = ""
        self._integration = ""
        self._integration_ref = True  # False after `uet gc` removed it (recreated on a move)
        self._states: dict[str, WsRecord] = {}
        self._patches: dict[tuple[str, int], str] = {}
        self._keep = Keepalive(repo, run)
        self._fanout = False  # evidence/_XY/WS/N (a big run) instead of evidence/WS/N
        # Group commit (see the module doc): transitions queued for the next transaction,
        # how many per workstream, the thread writing for callers that do not wait.
        self._qlock = threading.Lock()
        self._wake = threading.Condition(self._qlock)
        self._queue: list[Pending] = []
        self._pending_ws: dict[str, int] = {}
        self._async_errors: list[BaseException] = []
        self._writer: threading.Thread | None = None
        self._writing = False  # a group is being written (by the thread holding the mutex)

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        repo: Repo,
        *,
        base: str,
        target: str | None,
        plan: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Ledger:
        """Start a run: root ledger commit ``run: start`` (trailers Uet-Run, Uet-Base,
        Uet-Target; tree ``plan.json`` [+ ``config.json``]) and ``integration/RUN = base``."""
        if run_id is not None:
            layout.check_run_id(run_id)
        base_oid = repo.rev_parse(str(base))
        if base_oid is None:
            raise UetError(f"base {base!r} is not a commit in {repo.workdir}")
        if target is not None and (not target or any(c in target for c in "\n\0")):
            raise UetError(f"bad target {target!r}")
        for _ in range(20):
            try:
                return cls._start(repo, run_id or layout.new_run_id(), base_oid, target, plan,
                                  config)
            except _RunExists:
                if run_id is not None:
                    raise
        raise UetError("could not find a free run id (20 collisions)")  # pragma: no cover

    @classmethod
    def _start(cls, repo: Repo, run: str, base_oid: str, target: str | None,
               plan: Mapping[str, Any], config: Mapping[str, Any] | None) -> Ledger:
        if repo.read_ref(layout.ledger_ref(run)) is not None:
            raise _RunExists(f"run {run} already exists")
        try:
            lock = RunLock.acquire(repo, run)
        except LedgerBusy:
            raise _RunExists(f"run {run} already exists (and is being written)") from None
        self = cls(repo, run, lock)
        try:
            files = {PLAN_PATH: (json.dumps(plan, indent=2, sort_keys=True, default=str)
                                 + "\n").encode()}
            if config is not None:
                files[CONFIG_PATH] = (
                    json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
                ).encode()
            trailers = [("Uet-Run", run), ("Uet-Base", base_oid)]
            if target is not None:
                trailers.append(("Uet-Target", target))
            n = len(plan_deps(plan))
            body = f"uet run {run} from {base_oid[:12]}" + (f" onto {target}" if target else "")
            body += f"; {plural(n, 'workstream')} planned" if n else ""
            written = Written(objects.empty_tree(repo), files, None,
                               format_message("run: start", body, trailers),
                               objects.identity(repo, "author"),
                               objects.identity(repo, "committer"))
            commit = written.write(repo)

            def build() -> RefTransaction:
                tx = repo.transaction(self._updater)
                tx.create(layout.ledger_ref(run), commit)
                tx.create(layout.integration_ref(run), base_oid)
                return tx

            try:
                # A concurrent prune can take the new root commit before its ref exists.
                commit_keeping(self._keep, build, written, self._commit)
            except RefConflict as exc:
                raise _RunExists(f"run {run} already exists ({exc})") from None
            self.base, self.target, self.plan = base_oid, target, dict(plan)
            self._tip, self._tree, self._integration = commit, written.tree, base_oid
            self._fanout = n > FANOUT_ABOVE
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def open(cls, repo: Repo, run: str, *, repair: bool = False) -> Ledger:
        """Take over an existing run (resume, retry, drop, land, rollback).

        A writer killed in the middle of git's commit phase (SIGKILL of its process group,
        power loss) can leave ref lock files and a half-moved transaction. Holding the run's
        lock, ``open`` removes such stale locks and makes the refs agree with the ledger
        again, recording a ``run: repair`` event. Without stale locks, refs that disagree with
        the ledger (the integration ref included) raise a one-line UetError pointing to
        ``uet fsck --repair`` unless ``repair=True``.
        """
        layout.check_run_id(run)
        lock = RunLock.acquire(repo, run)
        self = cls(repo, run, lock)
        try:
            self._load(repair)
        except BaseException:
            self.close()
            raise
        return self

    def _load(self, repair: bool) -> None:
        run = self.run
        stale = clear_stale_ref_locks(self.repo, run)
        if stale or repair:
            notes = ["removed stale ref locks of a killed writer: " + ", ".join(stale)] \
                if stale else []
            repair_refs(self.repo, run, updater=self._updater, notes=notes, keep=self._keep)
        refs = all_run_refs(self.repo, run)
        tip = refs.get(layout.ledger_ref(run))
        if tip is None:
            raise UetError(f"no run {run} in this repository (no {layout.ledger_ref(run)})")
        log = read_ledger(self.repo, run, tip=tip)
        if log.base is None:
            raise UetError(f"run {run}: the ledger has no `run: start` commit with Uet-Base")
        fixes = disagreements(log, refs)
        if fixes:
            shown = "; ".join(why for *_, why in fixes[:3])
            raise UetError(f"run {run}: refs disagree with the ledger ({shown}); "
                           f"run `uet fsck --repair {run}`")
        self.base, self.target = log.base, log.target
        # The ledger, not the ref, says where integration is: the ref agrees (checked above)
        # or `uet gc` removed it (created again on the next move).
        self._tip, self._integration = tip, recorded_integration(log) or log.base
        self._integration_ref = layout.integration_ref(run) in refs
        try:
            self._tree = tree_of(self.repo, tip)
            raw = objects.read_blob(self.repo, tip, PLAN_PATH)
        except MissingObject as exc:
            raise UetError(f"run {run}: {layout.ledger_ref(run)}: {exc}; run "
                           f"`uet fsck --repair {run}`", exit_code=1) from None
        try:
            self.plan = json.loads(raw) if raw else {}
        except ValueError:
            self.plan = {}
        layout_now = fanned_out(self.repo, self._tree)  # what the run's evidence already uses
        self._fanout = layout_now if layout_now is not None else \
            len(plan_deps(self.plan)) > FANOUT_ABOVE
        self._load_states(log, refs)

    def _load_states(self, log: LedgerLog, refs: Mapping[str, str]) -> None:
        by_ws: dict[str, list[Any]] = {}
        for e in log.transitions():
            by_ws.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
        state_refs = state_refs_of(refs, self.run)
        for ws, events in by_ws.items():
            rec = ws_record(ws, events)
            found = state_refs.get(ws, [])
            if found:
                _, rec.ref, rec.target = found[0]
            else:
                rec.collected = True
            self._states[ws] = rec
        for name, oid in refs.items():
            p = layout.parse_ref(name)
            if p is not None and p.kind == "patch" and p.ws and p.attempt:
                self._patches[(p.ws, p.attempt)] = oid

    # ------------------------------------------------------------------ reading
    # Readers take no lock: the mutex is held across a transition's fsynced ref transaction,
    # and worker threads asking for a state would queue behind every other thread's write.
    # Records are replaced whole after a commit, never changed once published, and each read
    # below is one atomic reference read (``list()`` copies a dict's items atomically), so a
    # reader sees the state from just before or just after a concurrent transition; the
    # thread that wrote a transition always sees it.

    def state(self, ws: str) -> WsRecord | None:
        if self._pending_ws.get(ws):  # queued without waiting (``submit``): wait for it
            self.flush()
        rec = self._states.get(ws)
        return None if rec is None else WsRecord(**vars(rec))

    def states(self) -> dict[str, WsRecord]:
        if self._pending_ws:
            self.flush()
        return {ws: WsRecord(**vars(r)) for ws, r in list(self._states.items())}

    def integration_tip(self) -> str:
        """The integration tip the ledger recorded (never read from the ref)."""
        return self._integration

    @property
    def tip(self) -> str:
        """The ledger branch's tip commit."""
        return self._tip

    # ------------------------------------------------------------------ writing

    def _check_open(self) -> None:
        if self._closed:
            raise UetError(f"the ledger of run {self.run} is closed")

    def _commit_info(self, value: str, what: str) -> CommitInfo:
        try:
            return get_commit(self.repo, str(value), what=what)
        except MissingObject:
            kind = "is not a commit" if has_object(self.repo, str(value)) else \
                "is not an object in this repository"
            raise UetError(f"{what} {value} {kind}") from None

    def _new_commit(self, subject: str, body: str, trailers: list[tuple[str, str]],
                    files: Mapping[str, bytes], *, parent: str | None = None,
                    tree: str | None = None) -> Written:
        """A ledger commit on ``parent``'s ``tree`` (default: the tip) with ``files`` added."""
        written = Written(tree or self._tree, dict(files), parent or self._tip,
                           format_message(subject, body, trailers),
                           objects.identity(self.repo, "author"),
                           objects.identity(self.repo, "committer"))
        for tries in range(5):
            try:
                written.write(self.repo)
                return written
            except Exception:  # a prune took what it builds on: put that back, again
                if tries == 4:
                    raise
                self._keep.ensure(force=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def record(
        self,
        ws: str,
        to: str,
        *,
        attempt: int,
        patch: str | None = None,
        candidate: str | None = None,
        reason: str | None = None,
        summary: str = "",
        evidence: Mapping[str, bytes] | None = None,
        integration: str | None = None,
        trailers: Mapping[str, str] | None = None,
    ) -> str:
        """Move ``ws`` to state ``to`` in one atomic transaction; returns the ledger commit.
        The transaction may also carry what other threads record at the same moment (group
        commit, see the module doc); it returns once this transition is durable."""
        step = Step(to, patch=patch, candidate=candidate, reason=reason, summary=summary,
                    evidence=evidence, integration=integration, trailers=trailers)
        return self.record_chain(ws, [step], attempt=attempt)[-1]

    def record_chain(self, ws: str, steps: Sequence[Step], *, attempt: int,
                     first: bool = False) -> list[str]:
        """Move ``ws`` through ``steps`` (consecutive transitions of one attempt, decided
        together) in ONE ref transaction: each step is its own ledger commit, the next one's
        parent, so the history reads as if each had been recorded alone; only the last
        state's ref is ever created. Returns the ledger commits once durable. An illegal step
        raises and records none of them. ``first``: ahead of workers' transitions in a group
        commit (the integrator's)."""
        req = self.submit(ws, steps, attempt=attempt, first=first)
        self._wait(req)
        return req.value()

    def submit(self, ws: str, steps: Sequence[Step], *, attempt: int, first: bool = False,
               done: Callable[[list[str]], None] | None = None) -> Pending:
        """Queue ``steps`` (as ``record_chain``) for the writer and return at once: the
        writer's own thread commits it with whatever else is queued, then calls ``done``
        with the ledger commits (on that thread, holding the writer's mutex). For a caller
        that needs nothing back (a worker's ``queued``): its slot is free before the fsync.
        Until it is durable, ``state(ws)``/``states()`` wait for it; a failure is raised by
        the next ``flush()`` (and so by the next read of that workstream)."""
        layout.check_ws_id(ws)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise UetError(f"bad attempt {attempt!r} for {ws}: expected an integer >= 1")
        if not steps:
            raise UetError(f"{ws}: no transition to record")
        req = Pending(ws, tuple(steps), attempt, first, done)
        with self._qlock:
            self._check_open()
            self._queue.append(req)
            self._pending_ws[ws] = self._pending_ws.get(ws, 0) + 1
            if done is not None:
                if self._writer is None:
                    self._writer = threading.Thread(target=_background_writer,
                                                    args=(weakref.ref(self),), daemon=True,
                                                    name=f"uet-ledger-{self.run}")
                    self._writer.start()
                self._wake.notify()
        return req

    def flush(self) -> None:
        """Return once everything queued before is durable (or failed); raises the first
        failure of a transition queued without waiting (``submit``), once."""
        self._flush_queued()
        with self._qlock:
            errors, self._async_errors = self._async_errors, []
        if errors:
            raise errors[0]

    def _wait(self, req: Pending) -> None:
        """Write the queue, ``req`` in it, unless the thread writing now took it: the
        caller that finds the mutex free is the leader and commits everyone's transitions."""
        while not req.finished:
            with self._mutex:
                if self._writing:
                    raise RuntimeError("Ledger.record inside a ledger transaction")
                if not req.finished:
                    self._drain()

    def _drain(self) -> None:
        """Holding the mutex: write everything queued as ONE transaction; when that fails,
        each request alone (so one bad request fails only its caller)."""
        with self._qlock:
            batch = _ordered(self._queue)
            self._queue.clear()
        if not batch:
            return
        self._writing = True
        try:
            try:
                self._write_group(batch)
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0].finished:
                        batch[0].fail(exc)
                else:
                    for req in batch:
                        if req.finished:
                            continue
                        try:
                            self._write_group([req])
                        except Exception as exc1:
                            req.fail(exc1)
            except BaseException as exc:  # interrupted: nobody waits for it in vain
                for req in batch:
                    if not req.finished:
                        req.fail(exc)
                raise
        finally:
            self._writing = False
            with self._qlock:
                for req in batch:
                    left = self._pending_ws.get(req.ws, 1) - 1
                    if left > 0:
                        self._pending_ws[req.ws] = left
                    else:
                        self._pending_ws.pop(req.ws, None)
                    if req.done is not None and req.error is not None:
                        self._async_errors.append(req.error)
            for req in batch:
                if req.done is not None and req.error is None and req.oids is not None:
                    req.done(req.oids)

    def _write_group(self, reqs: list[Pending]) -> None:
        """Objects for every step of ``reqs`` (chained on one another), then one ref
        transaction for all of them. A request whose step is illegal fails alone, before
        anything is committed; a failure of the transaction raises (nothing published)."""
        sim = _Sim(self._tip, self._tree, self._integration)
        prepared: list[tuple[Pending, list[Written]]] = []
        for req in reqs:
            mark = sim.copy()
            try:
                written = [self._prepare(sim, req.ws, step, req.attempt) for step in req.steps]
            except Exception as exc:
                sim = mark
                req.fail(exc)
                continue
            prepared.append((req, written))
        if not prepared:
            return
        writtens = [w for _, ws in prepared for w in ws]
        keys: dict[str, list[str]] = {}  # crash-point keys: workstream -> its states here
        for req, _ in prepared:
            keys.setdefault(req.ws, []).extend(step.to for step in req.steps)

        def build() -> RefTransaction:
            tx = self.repo.transaction(self._updater)
            tx.update(layout.ledger_ref(self.run), sim.tip, self._tip)
            for ws, new in sim.states.items():
                cur = self._states.get(ws)
                assert new.ref is not None and new.target is not None
                if cur is not None and cur.ref is not None and cur.target is not None:
                    if cur.ref == new.ref:
                        tx.update(new.ref, new.target, cur.target)
                    else:
                        tx.delete(cur.ref, cur.target)
                        tx.create(new.ref, new.target)
                else:
                    tx.create(new.ref, new.target)
            for (ws, n), oid in sim.patches.items():
                tx.create(layout.patch_ref(self.run, ws, n), oid)
            for ws, n in sim.verify:
                tx.verify(layout.patch_ref(self.run, ws, n), self._patches[(ws, n)])
            if sim.integration != self._integration:
                tx.update(layout.integration_ref(self.run), sim.integration,
                          self._integration if self._integration_ref else None)
            return tx

        def remember() -> None:
            self._states.update(sim.states)
            self._patches.update(sim.patches)
            if sim.integration != self._integration:
                self._integration, self._integration_ref = sim.integration, True
            self._tip, self._tree = sim.tip, sim.tree

        what = ", ".join(f"{req.ws} -> {'/'.join(s.to for s in req.steps)}"
                         for req, _ in prepared)
        try:
            self._transact(build, writtens, remember, keys, what)
        except BaseException as exc:
            if self._tip == sim.tip:  # committed all the same (``_transact`` remembered it):
                for req, written in prepared:  # each caller gets the error, as alone
                    req.oids = [w.commit for w in written]
                    req.fail(exc)
            raise
        for key, tos in keys.items():
            _crash_point("after-commit", key, tos)
        for req, written in prepared:
            req.finish([w.commit for w in written])

    def _prepare(self, sim: _Sim, ws: str, step: Step, attempt: int) -> Written:
        """Check one transition against the state ``sim`` holds (the writer's memory plus
        the transitions before it in this transaction), write its objects, advance ``sim``."""
        to, reason = step.to, step.reason
        cur = sim.states[ws] if ws in sim.states else self._states.get(ws)
        frm = cur.state if cur is not None else None
        check_transition(frm, to)
        check_reason(to, reason)
        cur_attempt = cur.attempt if cur is not None and cur.attempt else 0
        check_attempt(ws, frm, to, attempt, cur_attempt)
        same_attempt = cur is not None and attempt == cur_attempt
        named: dict[str, CommitInfo] = {}
        patch_oid = cand_oid = integ_oid = None
        if step.patch:
            info = self._commit_info(step.patch, "patch")
            patch_oid, named[info.oid] = info.oid, info
        if step.candidate:
            info = self._commit_info(step.candidate, "candidate")
            cand_oid, named[info.oid] = info.oid, info
        if patch_oid is None and same_attempt and cur is not None:
            patch_oid = cur.patch
        if cand_oid is None and same_attempt and cur is not None and to in KEEPS_CANDIDATE:
            cand_oid = cur.candidate
        if to in PATCH_STATES and patch_oid is None:
            raise UetError(f"{ws}: state {to} needs a patch commit")
        if to in CANDIDATE_STATES and cand_oid is None:
            raise UetError(f"{ws}: state {to} needs a candidate commit")
        key = (ws, attempt)
        old_patch = sim.patches.get(key) or self._patches.get(key)
        if patch_oid and old_patch and old_patch != patch_oid:
            raise UetError(f"{ws}: attempt {attempt} already has patch {old_patch[:12]}; "
                           "patch refs never move (use a new attempt)")
        if step.integration:
            info = self._commit_info(step.integration, "integration")
            integ_oid, named[info.oid] = info.oid, info
        if integ_oid and integ_oid != sim.integration and \
                not is_ancestor(self.repo, sim.integration, integ_oid):
            raise UetError(f"integration ref of run {self.run} only fast-forwards: "
                           f"{integ_oid[:12]} does not contain {sim.integration[:12]}")
        moves_integration = bool(integ_oid and integ_oid != sim.integration)
        extra = _extra_trailers(step.trailers)

        # -- objects
        files = evidence_files(evidence_prefix(ws, attempt, self._fanout), step.evidence)
        tr: list[tuple[str, str]] = [
            ("Uet-Run", self.run), ("Uet-Workstream", ws), ("Uet-Attempt", str(attempt)),
            ("Uet-From", frm or "none"), ("Uet-To", to),
        ]
        if patch_oid:
            tr.append(("Uet-Patch", patch_oid))
        if cand_oid:
            tr.append(("Uet-Candidate", cand_oid))
        if reason:
            tr.append(("Uet-Reason", reason))
        if moves_integration:
            assert integ_oid is not None
            tr.append(("Uet-Integration", integ_oid))
        tr.extend(extra)
        body = step.summary.strip() or self._default_summary(ws, frm, to, attempt, reason)
        written = self._new_commit(f"{ws}: {frm or 'none'} -> {to}", body, tr, files,
                                   parent=sim.tip, tree=sim.tree)
        written.named = named
        _crash_point("after-objects", ws, (to,))

        # -- what the refs become (moved by the caller's one transaction)
        target = cand_oid if to in CANDIDATE_STATES else patch_oid or written.commit
        if to == "quarantined" and same_attempt and cur is not None and cur.candidate:
            # Judged on its candidate: the state ref keeps that candidate (the evidence of
            # the verdict) reachable; the patch has its own ref. ledger.expected agrees.
            target = cur.candidate
        assert target is not None
        when = written.committer.time
        new = WsRecord(ws=ws, state=to, attempt=attempt, reason=reason, patch=patch_oid,
                       candidate=cand_oid if cand_oid else
                       (cur.candidate if same_attempt and cur is not None else None),
                       started=cur.started if cur is not None else when, updated=when,
                       ref=layout.state_ref(to, self.run, ws), target=target)
        if new.started is not None:
            new.duration = when - new.started
        sim.states[ws] = new
        sim.tip, sim.tree = written.commit, written.tree
        if patch_oid and old_patch is None:
            sim.patches[key] = patch_oid
        elif step.patch is not None and old_patch == patch_oid and key in self._patches:
            sim.verify.add(key)  # given again explicitly: make sure nobody moved it
        if moves_integration:
            assert integ_oid is not None
            sim.integration = integ_oid
        return written

    def _transact(self, build: Callable[[], RefTransaction], writtens: list[Written],
                  remember: Callable[[], None], crash_keys: Mapping[str, list[str]] | None,
                  what: str) -> None:
        """Commit the transaction ``build()`` makes (naming ``writtens``, the last one the
        new ledger tip), then keep the cache and the objects true (see the module doc):
        retry a held ref lock, put back refs a tool deleted, write again what a concurrent
        prune removed, and record a ``run: repair`` for a restore."""
        hooked = bool(crash_keys) and bool(os.environ.get("UET_LEDGER_CRASH"))
        if hooked:
            assert crash_keys is not None
            keys = dict(crash_keys)

            def before_commit() -> None:
                for key, tos in keys.items():
                    _crash_point("after-prepare", key, tos)

            self._updater.before_commit = before_commit
        last = writtens[-1]
        restored: list[str] = []
        rewrites = 0
        try:
            while True:
                try:
                    self._commit(build())
                    break
                except RefConflict as exc:
                    if not exc.lock_held and not restored:
                        restored = self._restore_deleted_refs()
                        if restored:
                            continue
                    why = "could not lock its refs" if exc.lock_held else "lost a race"
                    raise RefConflict(f"run {self.run}: {what} {why} and was not recorded: "
                                      f"{exc}", lock_held=exc.lock_held) from None
                except GitError as exc:
                    # git refuses a ref to an object a concurrent prune removed between our
                    # write and the transaction: write it again (same bytes, same id).
                    if not pruned_object(exc) or rewrites >= PRUNED_RETRIES:
                        raise
                    rewrites += 1
                    # A prune still running would take the rewritten objects as well (it
                    # deletes whatever its walk did not reach, however new): let it end.
                    wait_for_gc(self.repo, pruning_gc(self.repo))
                    for written in writtens:
                        self._keep.rewrite(written)
                except BaseException:
                    # Interrupted (Ctrl-C, a broken pipe) after "commit" may have reached git:
                    # the ledger ref says whether it happened; keep the cache true to it.
                    if self.repo.read_ref(layout.ledger_ref(self.run)) == last.commit:
                        remember()
                    raise
        finally:
            if hooked:
                self._updater.before_commit = None
        remember()
        self._keep.add_all(writtens)
        if restored:
            self.event(REPAIR_EVENT, "refs of this run were deleted behind the writer's back; "
                       "restored from the writer's memory:\n"
                       + "\n".join(f"- {name}" for name in restored),
                       trailers={"Uet-Repaired": str(len(restored))})

    def _commit(self, tx: RefTransaction) -> None:
        """Commit ``tx``, retrying with a short backoff for up to ``LOCK_RETRY_SECONDS`` while
        another git holds one of its ref locks (a user's ``git pack-refs``/``gc``). A lost
        compare-and-swap is never retried here."""
        deadline = time.monotonic() + LOCK_RETRY_SECONDS
        delay = 0.02
        while True:
            try:
                tx.commit()
                return
            except RefConflict as exc:
                if not exc.lock_held or time.monotonic() + delay > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _own_refs(self) -> dict[str, str]:
        """What this writer knows its refs must be (from memory, no reads)."""
        run = self.run
        want = {layout.ledger_ref(run): self._tip}
        if self._integration_ref:
            want[layout.integration_ref(run)] = self._integration
        for rec in list(self._states.values()):
            if rec.ref and rec.target:
                want[rec.ref] = rec.target
        for (ws, n), oid in list(self._patches.items()):
            want[layout.patch_ref(run, ws, n)] = oid
        return want

    def _restore_deleted_refs(self) -> list[str]:
        """After a lost compare-and-swap: when refs of this run are gone (a tool deleted them)
        and none has another value, create them again from memory; returns their names
        (``[]``: not that case, nothing done)."""
        want = self._own_refs()
        have = all_run_refs(self.repo, self.run)
        if any(have.get(name) not in (None, oid) for name, oid in want.items()):
            return []
        missing = sorted(name for name in want if name not in have)
        if not missing:
            return []
        tx = self.repo.transaction(self._updater)
        for name in missing:
            tx.create(name, want[name])
        self._commit(tx)
        return missing

    @staticmethod
    def _default_summary(ws: str, frm: str | None, to: str, attempt: int,
                         reason: str | None) -> str:
        move = f"entered the ledger as {to}" if frm is None else f"moved from {frm} to {to}"
        why = f" ({reason})" if reason else ""
        return f"{ws} {move}{why}, attempt {attempt}."

    def event(
        self,
        subject: str,
        body: str = "",
        trailers: Mapping[str, str] | None = None,
        evidence: Mapping[str, bytes] | None = None,
    ) -> str:
        """A run-level ledger commit (``run: land``, ``run: finish``...); no state ref moves.
        Evidence goes to ``run/NAME`` in the ledger tree."""
        subject = one_line(subject)
        if not subject.startswith("run:"):
            subject = f"run: {subject}"
        extra = _extra_trailers(trailers)
        self._flush_queued()
        with self._mutex:
            self._check_open()
            files = evidence_files("run", evidence)
            written = self._new_commit(subject, body, [("Uet-Run", self.run), *extra], files)

            def build() -> RefTransaction:
                tx = self.repo.transaction(self._updater)
                tx.update(layout.ledger_ref(self.run), written.commit, self._tip)
                return tx

            def remember() -> None:
                self._tip, self._tree = written.commit, written.tree

            self._transact(build, [written], remember, None, f"event {subject!r}")
            return written.commit

    def collect(self, refs: Mapping[str, str], body: str,
                trailers: Mapping[str, str] | None = None) -> str:
        """``uet gc``: delete ``refs`` (ref -> its current oid; refs of this run) and record
        the ``run: gc`` commit listing them, in ONE transaction; returns the ledger commit.
        The writer's memory follows: collected workstreams keep their last state."""
        names = sorted(refs)
        for name in names:
            p = layout.parse_ref(name)
            if p is None or p.run != self.run or p.kind == "ledger":
                raise UetError(f"run {self.run}: gc cannot remove {name}")
        extra = _extra_trailers(trailers)
        self._flush_queued()
        with self._mutex:
            self._check_open()
            text = body.strip() + "\n\n" + "\n".join(names)
            written = self._new_commit(GC_EVENT, text, [("Uet-Run", self.run), *extra], {})

            def build() -> RefTransaction:
                tx = self.repo.transaction(self._updater)
                tx.update(layout.ledger_ref(self.run), written.commit, self._tip)
                for name in names:
                    tx.delete(name, refs[name])
                return tx

            def remember() -> None:
                self._tip, self._tree = written.commit, written.tree
                gone = set(names)
                for ws, rec in list(self._states.items()):
                    if rec.ref in gone:
                        self._states[ws] = WsRecord(**{**vars(rec), "ref": None,
                                                       "target": None, "collected": True})
                for key in [k for k in self._patches
                            if layout.patch_ref(self.run, *k) in gone]:
                    del self._patches[key]
                if layout.integration_ref(self.run) in gone:
                    self._integration_ref = False

            self._transact(build, [written], remember, None, GC_EVENT)
            return written.commit

    def rebase_integration(
        self,
        onto: str,
        new_tip: str,
        *,
        summary: str = "",
        evidence: Mapping[str, bytes] | None = None,
        trailers: Mapping[str, str] | None = None,
        old: str | None = None,
    ) -> str:
        """Move the integration ref to ``new_tip``, a chain re-integrated onto ``onto`` (the
        target's new tip), with a ``run: rebase`` ledger commit, in ONE transaction; returns
        the ledger commit. The one move of the integration ref that need not fast-forward.

        ``new_tip`` must be ``onto`` or descend from it. ``old``: the integration tip the
        caller re-integrated from; if the ledger's is another, nothing is written. Trailers
        (kept from the first version of ``uet land --rebase``): ``Uet-Onto``,
        ``Uet-Previous-Integration``, ``Uet-Integration``, then ``trailers``. Evidence goes
        to ``run/NAME``. The ledger ref and the integration ref move with CAS on their old
        values (the integration ref is created if ``uet gc`` removed it)."""
        extra = _extra_trailers(trailers)
        self._flush_queued()
        with self._mutex:
            self._check_open()
            onto_oid = self._commit_info(onto, "rebase onto").oid
            new_info = self._commit_info(new_tip, "rebased integration tip")
            new_oid = new_info.oid
            if not is_ancestor(self.repo, onto_oid, new_oid):
                raise UetError(f"run {self.run}: rebased integration tip {new_oid[:12]} does "
                               f"not descend from {onto_oid[:12]}, the commit it was rebased "
                               "onto; nothing recorded")
            prev = self._integration
            if old is not None and self._commit_info(old, "previous integration tip").oid \
                    != prev:
                raise UetError(f"run {self.run}: the integration ref is at {prev[:12]}, not "
                               f"{str(old)[:12]} (it moved during the rebase); nothing recorded")

            # -- objects
            files = evidence_files("run", evidence)
            body = summary.strip() or (f"integration re-integrated onto {onto_oid[:12]}: "
                                       f"{prev[:12]} -> {new_oid[:12]}")
            tr = [("Uet-Run", self.run), ("Uet-Onto", onto_oid),
                  ("Uet-Previous-Integration", prev), ("Uet-Integration", new_oid), *extra]
            written = self._new_commit(REBASE_EVENT, body, tr, files)
            written.named = {new_oid: new_info}
            _crash_point("after-objects", REBASE_CRASH_KEY)

            # -- refs, one transaction
            iref = layout.integration_ref(self.run)

            def build() -> RefTransaction:
                tx = self.repo.transaction(self._updater)
                tx.update(layout.ledger_ref(self.run), written.commit, self._tip)
                if not self._integration_ref:
                    tx.create(iref, new_oid)
                elif new_oid != prev:
                    tx.update(iref, new_oid, prev)
                else:
                    tx.verify(iref, prev)
                return tx

            def remember() -> None:
                self._tip, self._tree = written.commit, written.tree
                self._integration, self._integration_ref = new_oid, True

            self._transact(build, [written], remember, {REBASE_CRASH_KEY: []}, REBASE_EVENT)
            _crash_point("after-commit", REBASE_CRASH_KEY)
            return written.commit

    # ------------------------------------------------------------------ closing

    def _flush_queued(self) -> None:
        """Before a run-level write: what workers queued goes first (history in order). A
        failure is left for ``flush`` to raise: it is not this write's. Not from inside a
        write (a repair's event): that one finishes the batch in hand. The mutex is taken
        even with nothing queued: a batch another thread took from the queue may still be
        being written, and ``flush`` returns only once it is."""
        with self._mutex:
            if not self._writing:
                self._drain()

    def close(self) -> None:
        """Write what is queued, stop the ref process and release the run's lock
        (idempotent). A queued transition that fails here is not raised: it was never
        recorded, and the next ``uet resume`` does its work again."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self.flush()
        with self._mutex:
            if self._closed:
                return
            with self._qlock:  # no more submits; the background writer ends
                self._closed = True
                self._wake.notify_all()
            with contextlib.suppress(Exception):
                self._drain()  # what was queued after the flush above
            with contextlib.suppress(UetError):
                self._keep.ensure(force=True)  # a last look for a prune at the end
            self._updater.close()
            self._lock.release()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(run={self.run!r}, tip={self._tip[:12]!r}, closed={self._closed})"
