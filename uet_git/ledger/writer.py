"""The single writer of a run's ledger: every state change is one atomic ref transaction.

A transition (``Ledger.record``) does, in this order:

1. check the move against ``states`` (the transition table and the attempt rules; an illegal
   one raises, nothing is written);
2. write the objects: evidence blobs, the new ledger tree (previous tree + ``evidence/WS/N/...``)
   and the ledger commit (subject ``WS: from -> to``, a short body, ``Uet-*`` trailers);
   ``transition.prepare``;
3. move the refs in ONE ``update-ref --stdin`` transaction, each with its old value: the ledger
   ref (CAS on the old tip), the old state ref (delete, CAS), the new state ref (create: must
   not exist), the attempt's patch ref (create, or verify when it exists), and the integration
   ref (CAS) when it moves; ``transition.group_transaction``;
4. check that what the refs now name exists (``transact``: concurrent git housekeeping).

A crash before step 3 leaves unreferenced objects and the old state; a crash of uet inside it
leaves the old state (git, in its own session, rolls the transaction back when its stdin closes
before ``commit``) or the new one (``commit`` had reached git, which finishes it). Never both,
never neither. Only a kill of git itself in the middle of its commit phase (SIGKILL of the whole
process group, power loss) can leave ref lock files and half-moved refs; ``Ledger.open`` then
removes the stale locks (``lock.py``) and makes the refs agree with the ledger
(``repair.py``), recording ``run: repair`` (``opening.py``).

One writer per run (``lock.RunLock``), with the CAS old values as the second line of defence.
Readers (``query.py``) never lock. Within a process the writer is thread-safe: one mutex
serialises transitions, and each thread writes objects through its own handle. What it knows
of its run is its ``memory.Memory``; how it keeps objects and refs true under a user's ``git
gc``/``pack-refs`` or a tool deleting refs, and its durability, is in ``transact.py``.

Cost per transition does not grow with the number of refs or runs: no ref is listed, the
transaction touches at most five loose refs, and the long-lived ``update-ref`` process
(``RefUpdater``) saves a fork+exec each time. Only the trees on the evidence path are
rewritten (``objects.build_tree``). A flat ``evidence/`` tree (one entry per workstream) would
grow with the run and be written again by every transition; runs of more than
``evidence.FANOUT_ABOVE`` workstreams fan it out (``evidence/_XY/WS/N``), so the trees a
transition writes stay a few KB at any size (see ``evidence.py``).

Fewer, shared transactions (group commit and chains; the queue is ``groupcommit.py``). In
one group, every transition is still ONE ledger commit with all its trailers and evidence,
the parent of the next (the history reads exactly as if each had been committed alone), and
the transaction moves the ledger ref from the old tip to the last of them, each workstream's
state ref from its state before the group to its state after it, creates the attempts' patch
refs and fast-forwards the integration ref to the last tip recorded, every one with its old
value. A transition that is illegal in the state the ones before it leave fails alone, before
anything is committed (its objects are left unreferenced, as after ``after-objects``); a
failed transaction is tried again one request at a time, so a failure reaches only the
callers it concerns.

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
Fault injection for the crash tests (``UET_LEDGER_CRASH``) is described in ``crash.py``.

The integration ref only fast-forwards, with one exception: ``rebase_integration`` (``uet land
--rebase``) moves it onto a chain re-integrated on the target's new tip. That is the same kind
of transaction: objects first, then the ledger ref and the integration ref together, each with
its old value, and a ``run: rebase`` ledger commit whose ``Uet-Onto`` tells ``uet fsck`` where
the run's own commits now start and whose ``Uet-Integration`` records the new tip.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.refs import RefTransaction, RefUpdater
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import one_line
from uet_git.ledger import crash, layout, opening
from uet_git.ledger.crash import REBASE_CRASH_KEY
from uet_git.ledger.evidence import MAX_EVIDENCE, evidence_files, truncate
from uet_git.ledger.expected import GC_EVENT, REBASE_EVENT
from uet_git.ledger.groupcommit import GroupCommit, Pending
from uet_git.ledger.keepalive import Keepalive, Written
from uet_git.ledger.lock import LedgerBusy, RunLock
from uet_git.ledger.log import WsRecord
from uet_git.ledger.memory import Memory
from uet_git.ledger.opening import CONFIG_PATH, RunExists
from uet_git.ledger.repair import REPAIR_EVENT
from uet_git.ledger.transact import LOCK_RETRY_SECONDS, RefWriter
from uet_git.ledger.transition import (
    RESERVED_TRAILERS,
    Sim,
    Step,
    commit_info,
    extra_trailers,
    group_transaction,
    prepare,
    remember,
)

__all__ = [
    "CONFIG_PATH", "LOCK_RETRY_SECONDS", "MAX_EVIDENCE", "REBASE_CRASH_KEY", "REBASE_EVENT",
    "RESERVED_TRAILERS", "Ledger", "LedgerBusy", "Pending", "Step", "truncate",
]


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
        self._mem = Memory(run)
        self._keep = Keepalive(repo, run)
        self._rw = RefWriter(repo, self._mem, self._updater, self._keep)
        self._group = GroupCommit(run, self._mutex, self._write_group)

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
            except RunExists:
                if run_id is not None:
                    raise
        raise UetError("could not find a free run id (20 collisions)")  # pragma: no cover

    @classmethod
    def _start(cls, repo: Repo, run: str, base_oid: str, target: str | None,
               plan: Mapping[str, Any], config: Mapping[str, Any] | None) -> Ledger:
        if repo.read_ref(layout.ledger_ref(run)) is not None:
            raise RunExists(f"run {run} already exists")
        try:
            lock = RunLock.acquire(repo, run)
        except LedgerBusy:
            raise RunExists(f"run {run} already exists (and is being written)") from None
        self = cls(repo, run, lock)
        try:
            opening.write_start(self._rw, base_oid, target, plan, config)
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
            opening.load(self._rw, repair)
        except BaseException:
            self.close()
            raise
        return self

    # ------------------------------------------------------------------ reading
    # Readers take no lock: the mutex is held across a transition's fsynced ref transaction,
    # and worker threads asking for a state would queue behind every other thread's write.
    # Records are replaced whole after a commit, never changed once published, and each read
    # below is one atomic reference read (``list()`` copies a dict's items atomically), so a
    # reader sees the state from just before or just after a concurrent transition; the
    # thread that wrote a transition always sees it.

    @property
    def base(self) -> str:
        return self._mem.base

    @property
    def target(self) -> str | None:
        return self._mem.target

    @property
    def plan(self) -> dict[str, Any]:
        return self._mem.plan

    def state(self, ws: str) -> WsRecord | None:
        if self._group.pending(ws):  # queued without waiting (``submit``): wait for it
            self.flush()
        rec = self._mem.states.get(ws)
        return None if rec is None else WsRecord(**vars(rec))

    def states(self) -> dict[str, WsRecord]:
        if self._group.pending():
            self.flush()
        return {ws: WsRecord(**vars(r)) for ws, r in list(self._mem.states.items())}

    def integration_tip(self) -> str:
        """The integration tip the ledger recorded (never read from the ref)."""
        return self._mem.integration

    @property
    def tip(self) -> str:
        """The ledger branch's tip commit."""
        return self._mem.tip

    # ------------------------------------------------------------------ writing

    @property
    def _closed(self) -> bool:
        return self._group.closed

    def _check_open(self) -> None:
        if self._closed:
            raise UetError(f"the ledger of run {self.run} is closed")

    def _transact(self, build: Callable[[], RefTransaction], writtens: list[Written],
                  remember_: Callable[[], None], crash_keys: Mapping[str, list[str]] | None,
                  what: str) -> None:
        """``RefWriter.transact``, then a ``run: repair`` for refs it had to put back."""
        restored = self._rw.transact(build, writtens, remember_, crash_keys, what)
        if restored:
            self.event(REPAIR_EVENT, "refs of this run were deleted behind the writer's back; "
                       "restored from the writer's memory:\n"
                       + "\n".join(f"- {name}" for name in restored),
                       trailers={"Uet-Repaired": str(len(restored))})

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
        self._group.wait(req)
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
        self._group.submit(req)
        return req

    def flush(self) -> None:
        """Return once everything queued before is durable (or failed); raises the first
        failure of a transition queued without waiting (``submit``), once."""
        self._group.flush_queued()
        errors = self._group.take_errors()
        if errors:
            raise errors[0]

    def _write_group(self, reqs: list[Pending]) -> None:
        """Objects for every step of ``reqs`` (chained on one another), then one ref
        transaction for all of them. A request whose step is illegal fails alone, before
        anything is committed; a failure of the transaction raises (nothing published)."""
        sim = Sim.of(self._mem)
        prepared: list[tuple[Pending, list[Written]]] = []
        for req in reqs:
            mark = sim.copy()
            try:
                written = [prepare(self._rw, sim, req.ws, step, req.attempt)
                           for step in req.steps]
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
        what = ", ".join(f"{req.ws} -> {'/'.join(s.to for s in req.steps)}"
                         for req, _ in prepared)
        try:
            self._transact(lambda: group_transaction(self._rw, sim), writtens,
                           lambda: remember(self._mem, sim), keys, what)
        except BaseException as exc:
            if self._mem.tip == sim.tip:  # committed all the same (``transact`` remembered):
                for req, written in prepared:  # each caller gets the error, as alone
                    req.oids = [w.commit for w in written]
                    req.fail(exc)
            raise
        for key, tos in keys.items():
            crash.crash_point("after-commit", key, tos)
        for req, written in prepared:
            req.finish([w.commit for w in written])

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
        extra = extra_trailers(trailers)
        self._group.flush_queued()
        with self._mutex:
            self._check_open()
            files = evidence_files("run", evidence)
            written = self._rw.new_commit(subject, body, [("Uet-Run", self.run), *extra],
                                          files)
            old = self._mem.tip

            def build() -> RefTransaction:
                tx = self._rw.transaction()
                tx.update(layout.ledger_ref(self.run), written.commit, old)
                return tx

            def remember_() -> None:
                self._mem.tip, self._mem.tree = written.commit, written.tree

            self._transact(build, [written], remember_, None, f"event {subject!r}")
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
        extra = extra_trailers(trailers)
        self._group.flush_queued()
        with self._mutex:
            self._check_open()
            text = body.strip() + "\n\n" + "\n".join(names)
            written = self._rw.new_commit(GC_EVENT, text, [("Uet-Run", self.run), *extra], {})
            mem = self._mem
            old = mem.tip

            def build() -> RefTransaction:
                tx = self._rw.transaction()
                tx.update(layout.ledger_ref(self.run), written.commit, old)
                for name in names:
                    tx.delete(name, refs[name])
                return tx

            def remember_() -> None:
                mem.tip, mem.tree = written.commit, written.tree
                gone = set(names)
                for ws, rec in list(mem.states.items()):
                    if rec.ref in gone:
                        mem.states[ws] = WsRecord(**{**vars(rec), "ref": None,
                                                     "target": None, "collected": True})
                for key in [k for k in mem.patches
                            if layout.patch_ref(self.run, *k) in gone]:
                    del mem.patches[key]
                if layout.integration_ref(self.run) in gone:
                    mem.integration_ref = False

            self._transact(build, [written], remember_, None, GC_EVENT)
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
        extra = extra_trailers(trailers)
        self._group.flush_queued()
        with self._mutex:
            self._check_open()
            mem = self._mem
            onto_oid = commit_info(self.repo, onto, "rebase onto").oid
            new_info = commit_info(self.repo, new_tip, "rebased integration tip")
            new_oid = new_info.oid
            if not is_ancestor(self.repo, onto_oid, new_oid):
                raise UetError(f"run {self.run}: rebased integration tip {new_oid[:12]} does "
                               f"not descend from {onto_oid[:12]}, the commit it was rebased "
                               "onto; nothing recorded")
            prev = mem.integration
            if old is not None and commit_info(self.repo, old, "previous integration tip").oid \
                    != prev:
                raise UetError(f"run {self.run}: the integration ref is at {prev[:12]}, not "
                               f"{str(old)[:12]} (it moved during the rebase); nothing recorded")

            # -- objects
            files = evidence_files("run", evidence)
            body = summary.strip() or (f"integration re-integrated onto {onto_oid[:12]}: "
                                       f"{prev[:12]} -> {new_oid[:12]}")
            tr = [("Uet-Run", self.run), ("Uet-Onto", onto_oid),
                  ("Uet-Previous-Integration", prev), ("Uet-Integration", new_oid), *extra]
            written = self._rw.new_commit(REBASE_EVENT, body, tr, files)
            written.named = {new_oid: new_info}
            crash.crash_point("after-objects", REBASE_CRASH_KEY)

            # -- refs, one transaction
            iref = layout.integration_ref(self.run)
            old_tip = mem.tip

            def build() -> RefTransaction:
                tx = self._rw.transaction()
                tx.update(layout.ledger_ref(self.run), written.commit, old_tip)
                if not mem.integration_ref:
                    tx.create(iref, new_oid)
                elif new_oid != prev:
                    tx.update(iref, new_oid, prev)
                else:
                    tx.verify(iref, prev)
                return tx

            def remember_() -> None:
                mem.tip, mem.tree = written.commit, written.tree
                mem.integration, mem.integration_ref = new_oid, True

            self._transact(build, [written], remember_, {REBASE_CRASH_KEY: []}, REBASE_EVENT)
            crash.crash_point("after-commit", REBASE_CRASH_KEY)
            return written.commit

    # ------------------------------------------------------------------ closing

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
            self._group.close()  # no more submits; the background writer ends
            with contextlib.suppress(Exception):
                self._group.drain()  # what was queued after the flush above
            with contextlib.suppress(UetError):
                self._keep.ensure(force=True)  # a last look for a prune at the end
            self._updater.close()
            self._lock.release()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(run={self.run!r}, tip={self._mem.tip[:12]!r}, closed={self._closed})"
