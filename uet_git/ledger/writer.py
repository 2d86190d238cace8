"""The single writer of a run's ledger: every state change is one atomic ref transaction.

A transition (``Ledger.record``) does, in this order:

1. check the move against ``states.TRANSITIONS`` (an illegal one raises, nothing is written);
2. write the objects: evidence blobs, the new ledger tree (previous tree + ``evidence/WS/N/...``)
   and the ledger commit (subject ``WS: from -> to``, a short body, ``Uet-*`` trailers);
3. move the refs in ONE ``update-ref --stdin`` transaction, each with its old value: the ledger
   ref (CAS on the old tip), the old state ref (delete, CAS), the new state ref (create: must
   not exist), the attempt's patch ref (create, or verify when it exists), and the integration
   ref (CAS) when it moves.

A crash before step 3 leaves unreferenced objects and the old state; a crash of uet inside it
leaves the old state (git, in its own session, rolls the transaction back when its stdin closes
before ``commit``) or the new one (``commit`` had reached git, which finishes it). Never both,
never neither. Only a kill of git itself in the middle of its commit phase (SIGKILL of the whole
process group, power loss) can leave ref lock files and half-moved refs; ``Ledger.open`` then
removes the stale locks and makes the refs agree with the ledger, and records ``run: repair``.

One writer per run: a non-blocking ``filelock`` on ``<common git dir>/uet/locks/RUN.lock``
(a second writer gets ``LedgerBusy`` at once), with the CAS old values as the second line of
defence. Readers (``query.py``) never lock. Within a process the writer is thread-safe: one
mutex serialises transitions, and each thread writes objects through its own pygit2 handle.

Cost per transition does not grow with the number of refs or runs: no ref is listed, the
transaction touches at most five loose refs, and the long-lived ``update-ref`` process
(``RefUpdater``) saves a fork+exec each time. Only the trees on the evidence path are
rewritten (``objects.build_tree``). What does grow is the ``evidence/`` tree of one run, one
entry per workstream: rewriting it costs ~1 us per workstream of the run (measured: +10 ms per
transition in a single run of 10,000 workstreams, nothing noticeable at a few hundred).

Durability (measured on this machine's ext4, 2 cores, medians): ref updates are fsynced
(``core.fsync=committed,reference``): +0.5 ms per transaction when idle, up to ~2.5 ms under
load, against ~0.1 ms without — kept, a transition costs ~2-4 ms either way. Objects are
written by libgit2, which does not fsync; fsyncing a transition's ~6 objects ourselves
measured ~9 ms (three times a whole transition), so it is not done. Objects are always written
before the refs that name them, so a killed process never leaves a ref to a missing object;
after a power loss the filesystem decides, and ``uet fsck`` / ``git fsck`` report a ref to a
lost object.

Fault injection for the crash tests: ``UET_LEDGER_CRASH=POINT[:WS]`` makes the process
``os._exit(99)`` at POINT (``after-objects``, ``after-prepare``, ``after-commit``) of a
``record()`` (for WS only, if given; ``run:rebase`` selects ``rebase_integration``). Unset, it
costs one dict lookup.

The integration ref only fast-forwards, with one exception: ``rebase_integration`` (``uet land
--rebase``) moves it onto a chain re-integrated on the target's new tip. That is the same kind
of transaction: objects first, then the ledger ref and the integration ref together, each with
its old value, and a ``run: rebase`` ledger commit whose ``Uet-Onto`` tells ``uet fsck`` where
the run's own commits now start and whose ``Uet-Integration`` lets a repair on open agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import filelock
import pygit2

from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.refs import RefConflict, RefTransaction, RefUpdater
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.ledger import layout
from uet_git.ledger.expected import disagreements, recorded_integration
from uet_git.ledger.log import PLAN_PATH, LedgerLog, WsRecord, plan_deps, read_ledger, ws_record
from uet_git.ledger.query import state_refs_of
from uet_git.ledger.states import (
    CANDIDATE_STATES,
    KEEPS_CANDIDATE,
    PATCH_STATES,
    check_attempt,
    check_reason,
    check_transition,
)

MAX_EVIDENCE = 1 << 20  # bytes kept per evidence blob
LOCK_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds between retries of a held ref lock
STALE_LOCK_AGE = 1.0  # seconds: a ref lock this old under a held run lock is a dead writer's
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


class LedgerBusy(UetError):
    """Another process (or Ledger object) holds this run's writer lock."""


class _RunExists(UetError):
    """``Ledger.create`` with a run id that is taken (a fresh id is tried when none was given)."""


def truncate(data: bytes, limit: int = MAX_EVIDENCE) -> bytes:
    """``data`` if it fits in ``limit`` bytes, else its head and tail around a marker line
    that says how many bytes were cut."""
    if len(data) <= limit:
        return data
    reserve = 160  # room for the marker line
    keep = max(limit - reserve, 2)
    head, tail = keep // 2, keep - keep // 2
    cut = len(data) - head - tail
    marker = (f"\n[uet: {cut} bytes cut here; the original had {len(data)} bytes, "
              f"the first {head} and last {tail} are kept]\n").encode()
    return data[:head] + marker + data[len(data) - tail:]


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def _message(subject: str, body: str, trailers: list[tuple[str, str]]) -> str:
    # git stops reading a message at a "---" line (a patch follows), which would hide the
    # trailers from `git interpret-trailers`: indent such body lines.
    body = "\n".join(f" {ln}" if ln.startswith("---") else ln
                     for ln in body.strip().splitlines()).strip()
    lines = [f"{k}: {_one_line(v)}" for k, v in trailers]
    parts = [subject.strip()]
    if body:
        parts.append(body)
    parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _extra_trailers(trailers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for k, v in (trailers or {}).items():
        if not _TRAILER_KEY.match(k):
            raise UetError(f"bad trailer key {k!r}: expected letters, digits and '-'")
        if k in RESERVED_TRAILERS:
            raise UetError(f"trailer {k} is written by the ledger itself")
        out.append((k, _one_line(v)))
    return out


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return STALE_LOCK_AGE


def _by_ws(log: Any) -> dict[str, list[Any]]:
    by_ws: dict[str, list[Any]] = {}
    for e in log.transitions():
        by_ws.setdefault(e.ws, []).append(e)
    return by_ws


def _crash_point(point: str, ws: str | None) -> None:
    spec = os.environ.get("UET_LEDGER_CRASH")
    if not spec:
        return
    want, _, only = spec.partition(":")
    if want == point and (not only or only == ws):
        os._exit(99)


class Ledger:
    """The writer of one run. Get one with ``Ledger.create`` or ``Ledger.open``."""

    def __init__(self, repo: Repo, run: str, lock: filelock.BaseFileLock, owner: Path) -> None:
        self.repo = repo
        self.run = run
        self._lock = lock
        self._owner = owner
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

    # ------------------------------------------------------------------ opening

    @staticmethod
    def _acquire(repo: Repo, run: str) -> tuple[filelock.BaseFileLock, Path]:
        locks = repo.uet_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        path = locks / f"{run}.lock"
        owner = locks / f"{run}.owner"
        lock = filelock.FileLock(str(path), thread_local=False)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            try:
                pid = owner.read_text().split()[0]
            except (OSError, IndexError):
                pid = "unknown"
            raise LedgerBusy(
                f"run {run} is being written by another uet process (pid {pid})"
            ) from None
        owner.write_text(f"{os.getpid()}\n")
        return lock, owner

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
            lock, owner = cls._acquire(repo, run)
        except LedgerBusy:
            raise _RunExists(f"run {run} already exists (and is being written)") from None
        self = cls(repo, run, lock, owner)
        try:
            files: dict[str, bytes | None] = {
                PLAN_PATH: (json.dumps(plan, indent=2, sort_keys=True, default=str) + "\n")
                .encode()
            }
            if config is not None:
                files[CONFIG_PATH] = (
                    json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
                ).encode()
            tree = objects.build_tree(repo, None, files)
            trailers = [("Uet-Run", run), ("Uet-Base", base_oid)]
            if target is not None:
                trailers.append(("Uet-Target", target))
            n = len(plan_deps(plan))
            body = f"uet run {run} from {base_oid[:12]}" + (f" onto {target}" if target else "")
            body += f"; {n} workstreams planned" if n else ""
            commit = objects.make_commit(repo, tree, [], _message("run: start", body, trailers))
            tx = repo.transaction(self._updater)
            tx.create(layout.ledger_ref(run), commit)
            tx.create(layout.integration_ref(run), base_oid)
            try:
                tx.commit()
            except RefConflict as exc:
                raise _RunExists(f"run {run} already exists ({exc})") from None
            self.base, self.target, self.plan = base_oid, target, dict(plan)
            self._tip, self._tree, self._integration = commit, tree, base_oid
        except BaseException:
            self.close()
            raise
        return self

    @classmethod
    def open(cls, repo: Repo, run: str, *, repair: bool = False) -> Ledger:
        """Take over an existing run (resume, retry, drop, land, rollback).

        A writer killed in the middle of git's commit phase (SIGKILL of its process group,
        power loss) can leave ref lock files and a half-moved transaction. Holding the run's
        lock, ``open`` removes such stale locks (older than ``STALE_LOCK_AGE``) and makes the
        refs agree with the ledger again, recording a ``run: repair`` event. Without stale
        locks, refs that disagree with the ledger raise a UetError (``uet fsck`` shows them)
        unless ``repair=True``.
        """
        layout.check_run_id(run)
        lock, owner = cls._acquire(repo, run)
        self = cls(repo, run, lock, owner)
        try:
            self._load(repair)
        except BaseException:
            self.close()
            raise
        return self

    def _ref_locks(self) -> list[Path]:
        d = self.repo.common_dir / "refs" / "uet"
        run = self.run
        pats = [f"*/{run}.lock", f"*/{run}/*.lock", f"patches/{run}/*/*.lock"]
        return sorted({p for pat in pats for p in d.glob(pat)})

    def _clear_stale_locks(self) -> list[str]:
        """Remove ref lock files of this run left by a dead writer; returns their ref names.
        A live git holds a ref lock for milliseconds, so a lock is stale once it is older than
        ``STALE_LOCK_AGE`` (wait for that, at most once)."""
        locks = self._ref_locks()
        if not locks:
            return []
        deadline = time.time() + STALE_LOCK_AGE
        while True:
            young = [p for p in locks if p.exists() and _age(p) < STALE_LOCK_AGE]
            if not young or time.time() > deadline:
                break
            time.sleep(0.05)
        removed = []
        for p in locks:
            if p.exists() and _age(p) >= STALE_LOCK_AGE:
                p.unlink(missing_ok=True)
                rel = p.relative_to(self.repo.common_dir).as_posix()
                removed.append(rel.removesuffix(".lock"))
        return removed

    def _read_refs(self) -> dict[str, str]:
        run = self.run
        pats = [layout.ledger_ref(run), layout.integration_ref(run), layout.patch_prefix(run),
                *layout.state_prefixes(run)]
        out = self.repo.git("for-each-ref", "--format=%(objectname) %(refname)", *pats).stdout
        return dict(
            (name, oid) for oid, _, name in (ln.partition(" ") for ln in out.decode().splitlines())
        )

    def _load(self, repair: bool) -> None:
        run = self.run
        stale = self._clear_stale_locks()
        refs = self._read_refs()
        tip = refs.get(layout.ledger_ref(run))
        if tip is None:
            raise UetError(f"no run {run} in this repository (no {layout.ledger_ref(run)})")
        log = read_ledger(self.repo, run, tip=tip)
        if log.base is None:
            raise UetError(f"run {run}: the ledger has no `run: start` commit with Uet-Base")
        fixes = self._expected_fixes(log, refs)
        if fixes:
            if not (stale or repair):
                shown = "; ".join(why for _, _, _, why in fixes[:3])
                raise UetError(f"run {run}: refs disagree with the ledger ({shown}); "
                               f"run `uet fsck {run}`")
            self._apply_fixes(tip, fixes, stale)
            refs = self._read_refs()
            tip = refs[layout.ledger_ref(run)]
            log = read_ledger(self.repo, run, tip=tip)
        # The ledger, not the ref, says where integration is; the ref agrees (checked above)
        # or `uet gc` removed it (recreated on the next move).
        integ = recorded_integration(log) or log.base
        self._integration_ref = layout.integration_ref(run) in refs
        self.base, self.target = log.base, log.target
        self._tip, self._integration = tip, integ
        self._tree = objects.commit_tree(self.repo, tip)
        raw = objects.read_blob(self.repo, tip, PLAN_PATH)
        try:
            self.plan = json.loads(raw) if raw else {}
        except ValueError:
            self.plan = {}
        state_refs = state_refs_of(refs, run)
        for ws, events in _by_ws(log).items():
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

    def _expected_fixes(self, log: LedgerLog, refs: Mapping[str, str]
                        ) -> list[tuple[str, str | None, str | None, str]]:
        """``(ref, old, new, why)`` that make the refs agree with the ledger (new None =
        delete, old None = create)."""
        return disagreements(log, refs)

    def _apply_fixes(self, tip: str, fixes: list[tuple[str, str | None, str | None, str]],
                     stale: list[str]) -> None:
        tx = self.repo.transaction(self._updater)
        tx.verify(layout.ledger_ref(self.run), tip)
        for name, old, new, _ in fixes:
            if new is None:
                assert old is not None
                tx.delete(name, old)
            else:
                tx.update(name, new, old)
        tx.commit()
        lines = [why for _, _, _, why in fixes]
        if stale:
            lines.insert(0, "removed stale ref locks of a killed writer: " + ", ".join(stale))
        self._tip = tip
        self._tree = objects.commit_tree(self.repo, tip)
        self.event("run: repair", "refs made to agree with the ledger:\n" + "\n".join(
            f"- {line}" for line in lines), trailers={"Uet-Repaired": str(len(fixes))})

    # ------------------------------------------------------------------ reading
    # Readers take no lock: the mutex is held across a transition's fsynced ref transaction,
    # and worker threads asking for a state would queue behind every other thread's write.
    # Records are replaced whole after a commit, never changed once published, and each read
    # below is one atomic reference read (``list()`` copies a dict's items atomically), so a
    # reader sees the state from just before or just after a concurrent transition; the
    # thread that wrote a transition always sees it.

    def state(self, ws: str) -> WsRecord | None:
        rec = self._states.get(ws)
        return None if rec is None else WsRecord(**vars(rec))

    def states(self) -> dict[str, WsRecord]:
        return {ws: WsRecord(**vars(r)) for ws, r in list(self._states.items())}

    def integration_tip(self) -> str:
        return self._integration

    @property
    def tip(self) -> str:
        """The ledger branch's tip commit."""
        return self._tip

    # ------------------------------------------------------------------ writing

    def _check_open(self) -> None:
        if self._closed:
            raise UetError(f"the ledger of run {self.run} is closed")

    def _commit_oid(self, value: str, what: str) -> str:
        try:
            obj = self.repo.pg.revparse_single(str(value))
        except (KeyError, ValueError, pygit2.GitError):
            raise UetError(f"{what} {value} is not an object in this repository") from None
        if not isinstance(obj, pygit2.Commit):
            raise UetError(f"{what} {value} is not a commit")
        return str(obj.id)

    def _evidence_files(self, prefix: str, evidence: Mapping[str, bytes] | None
                        ) -> dict[str, bytes | None]:
        files: dict[str, bytes | None] = {}
        for name, data in (evidence or {}).items():
            if isinstance(data, str):
                data = data.encode("utf-8", "surrogateescape")
            if not isinstance(data, bytes | bytearray | memoryview):
                raise UetError(f"evidence {name!r} must be bytes")
            path = f"{prefix}/{name}"
            try:
                objects._split(path)
            except GitError:
                raise UetError(f"bad evidence name {name!r}") from None
            files[path] = truncate(bytes(data))
        return files

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
        """Move ``ws`` to state ``to`` in one atomic transaction; returns the ledger commit."""
        layout.check_ws_id(ws)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise UetError(f"bad attempt {attempt!r} for {ws}: expected an integer >= 1")
        with self._mutex:
            self._check_open()
            cur = self._states.get(ws)
            frm = cur.state if cur is not None else None
            check_transition(frm, to)
            check_reason(to, reason)
            cur_attempt = cur.attempt if cur is not None and cur.attempt else 0
            check_attempt(ws, frm, to, attempt, cur_attempt)
            same_attempt = cur is not None and attempt == cur_attempt
            patch_oid = self._commit_oid(patch, "patch") if patch else None
            cand_oid = self._commit_oid(candidate, "candidate") if candidate else None
            if patch_oid is None and same_attempt and cur is not None:
                patch_oid = cur.patch
            if cand_oid is None and same_attempt and cur is not None \
                    and to in KEEPS_CANDIDATE:
                cand_oid = cur.candidate
            if to in PATCH_STATES and patch_oid is None:
                raise UetError(f"{ws}: state {to} needs a patch commit")
            if to in CANDIDATE_STATES and cand_oid is None:
                raise UetError(f"{ws}: state {to} needs a candidate commit")
            old_patch = self._patches.get((ws, attempt))
            if patch_oid and old_patch and old_patch != patch_oid:
                raise UetError(f"{ws}: attempt {attempt} already has patch {old_patch[:12]}; "
                               "patch refs never move (use a new attempt)")
            integ_oid = self._commit_oid(integration, "integration") if integration else None
            if integ_oid and integ_oid != self._integration and \
                    not self.repo.pg.descendant_of(objects.to_oid(integ_oid),
                                                   objects.to_oid(self._integration)):
                raise UetError(f"integration ref of run {self.run} only fast-forwards: "
                               f"{integ_oid[:12]} does not contain {self._integration[:12]}")
            extra = _extra_trailers(trailers)

            # -- objects
            files = self._evidence_files(f"evidence/{ws}/{attempt}", evidence)
            tree = objects.build_tree(self.repo, self._tree, files) if files else self._tree
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
            if integ_oid and integ_oid != self._integration:
                tr.append(("Uet-Integration", integ_oid))
            tr.extend(extra)
            body = summary.strip() or self._default_summary(ws, frm, to, attempt, reason)
            commit = objects.make_commit(self.repo, tree, [self._tip],
                                         _message(f"{ws}: {frm or 'none'} -> {to}", body, tr))
            _crash_point("after-objects", ws)

            # -- refs, one transaction
            target = cand_oid if to in CANDIDATE_STATES else patch_oid or commit
            assert target is not None
            new_ref = layout.state_ref(to, self.run, ws)
            tx = self.repo.transaction(self._updater)
            tx.update(layout.ledger_ref(self.run), commit, self._tip)
            if cur is not None and cur.ref is not None and cur.target is not None:
                if cur.ref == new_ref:
                    tx.update(new_ref, target, cur.target)
                else:
                    tx.delete(cur.ref, cur.target)
                    tx.create(new_ref, target)
            else:
                tx.create(new_ref, target)
            if patch_oid and old_patch is None:
                tx.create(layout.patch_ref(self.run, ws, attempt), patch_oid)
            elif patch is not None and old_patch == patch_oid:
                # Given again explicitly: make sure nobody moved it.
                tx.verify(layout.patch_ref(self.run, ws, attempt), patch_oid)
            if integ_oid and integ_oid != self._integration:
                tx.update(layout.integration_ref(self.run), integ_oid,
                          self._integration if self._integration_ref else None)
            if os.environ.get("UET_LEDGER_CRASH"):
                self._updater.before_commit = lambda: _crash_point("after-prepare", ws)
            try:
                self._commit(tx)
            except RefConflict as exc:
                what = ("could not lock its refs" if exc.lock_held else "lost a race")
                raise RefConflict(
                    f"run {self.run}: {ws} {frm or 'none'} -> {to} {what} and was not "
                    f"recorded: {exc}", lock_held=exc.lock_held) from None
            except BaseException:
                # Interrupted (Ctrl-C, a broken pipe) after "commit" may have reached git: the
                # ledger ref says whether it happened; keep the cache true to it either way.
                if self.repo.read_ref(layout.ledger_ref(self.run)) == commit:
                    self._remember(ws, to, attempt, reason, patch_oid, cand_oid, cur,
                                   same_attempt, new_ref, target, commit, tree, integ_oid)
                raise
            _crash_point("after-commit", ws)
            self._remember(ws, to, attempt, reason, patch_oid, cand_oid, cur, same_attempt,
                           new_ref, target, commit, tree, integ_oid)
            return commit

    @staticmethod
    def _commit(tx: RefTransaction) -> None:
        """Commit ``tx``, retrying for ~1.5 s while another git holds one of its ref locks
        (a user's ``git pack-refs``/``gc`` in the same repository). A lost compare-and-swap
        is never retried: this writer holds the run's lock, so it means the refs were moved
        behind its back."""
        for delay in LOCK_RETRY_DELAYS:
            try:
                tx.commit()
                return
            except RefConflict as exc:
                if not exc.lock_held:
                    raise
            time.sleep(delay)
        tx.commit()

    def _remember(self, ws: str, to: str, attempt: int, reason: str | None,
                  patch_oid: str | None, cand_oid: str | None, cur: WsRecord | None,
                  same_attempt: bool, new_ref: str, target: str, commit: str, tree: str,
                  integ_oid: str | None) -> None:
        """Update the in-memory state after a transaction that committed."""
        when = int(self.repo.pg[objects.to_oid(commit)].commit_time)
        new = WsRecord(ws=ws, state=to, attempt=attempt, reason=reason,
                       patch=patch_oid, candidate=cand_oid if cand_oid else
                       (cur.candidate if same_attempt and cur is not None else None),
                       started=cur.started if cur is not None else when, updated=when,
                       ref=new_ref, target=target)
        if new.started is not None:
            new.duration = when - new.started
        self._states[ws] = new
        self._tip, self._tree = commit, tree
        if patch_oid:
            self._patches[(ws, attempt)] = patch_oid
        if integ_oid:
            self._integration = integ_oid
            self._integration_ref = True

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
        subject = _one_line(subject)
        if not subject.startswith("run:"):
            subject = f"run: {subject}"
        extra = _extra_trailers(trailers)
        with self._mutex:
            self._check_open()
            files = self._evidence_files("run", evidence)
            tree = objects.build_tree(self.repo, self._tree, files) if files else self._tree
            msg = _message(subject, body, [("Uet-Run", self.run), *extra])
            commit = objects.make_commit(self.repo, tree, [self._tip], msg)
            tx = self.repo.transaction(self._updater)
            tx.update(layout.ledger_ref(self.run), commit, self._tip)
            try:
                self._commit(tx)
            except RefConflict as exc:
                raise RefConflict(f"run {self.run}: event {subject!r} not recorded: {exc}") \
                    from None
            self._tip, self._tree = commit, tree
            return commit

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
        with self._mutex:
            self._check_open()
            onto_oid = self._commit_oid(onto, "rebase onto")
            new_oid = self._commit_oid(new_tip, "rebased integration tip")
            if new_oid != onto_oid and not self.repo.pg.descendant_of(
                    objects.to_oid(new_oid), objects.to_oid(onto_oid)):
                raise UetError(f"run {self.run}: rebased integration tip {new_oid[:12]} does "
                               f"not descend from {onto_oid[:12]}, the commit it was rebased "
                               "onto; nothing recorded")
            prev = self._integration
            if old is not None and self._commit_oid(old, "previous integration tip") != prev:
                raise UetError(f"run {self.run}: the integration ref is at {prev[:12]}, not "
                               f"{str(old)[:12]} (it moved during the rebase); nothing recorded")

            # -- objects
            files = self._evidence_files("run", evidence)
            tree = objects.build_tree(self.repo, self._tree, files) if files else self._tree
            body = summary.strip() or (f"integration re-integrated onto {onto_oid[:12]}: "
                                       f"{prev[:12]} -> {new_oid[:12]}")
            tr = [("Uet-Run", self.run), ("Uet-Onto", onto_oid),
                  ("Uet-Previous-Integration", prev), ("Uet-Integration", new_oid), *extra]
            commit = objects.make_commit(self.repo, tree, [self._tip],
                                         _message(REBASE_EVENT, body, tr))
            _crash_point("after-objects", REBASE_CRASH_KEY)

            # -- refs, one transaction
            iref = layout.integration_ref(self.run)
            tx = self.repo.transaction(self._updater)
            tx.update(layout.ledger_ref(self.run), commit, self._tip)
            if not self._integration_ref:
                tx.create(iref, new_oid)
            elif new_oid != prev:
                tx.update(iref, new_oid, prev)
            else:
                tx.verify(iref, prev)
            crash_hook = bool(os.environ.get("UET_LEDGER_CRASH"))
            if crash_hook:
                self._updater.before_commit = \
                    lambda: _crash_point("after-prepare", REBASE_CRASH_KEY)
            try:
                self._commit(tx)
            except RefConflict as exc:
                what = "could not lock its refs" if exc.lock_held else "lost a race"
                raise RefConflict(f"run {self.run}: {REBASE_EVENT} {what} and was not "
                                  f"recorded: {exc}", lock_held=exc.lock_held) from None
            except BaseException:
                # As in record(): the ledger ref says whether an interrupted commit happened.
                if self.repo.read_ref(layout.ledger_ref(self.run)) == commit:
                    self._moved_integration(commit, tree, new_oid)
                raise
            finally:
                if crash_hook:
                    self._updater.before_commit = None
            _crash_point("after-commit", REBASE_CRASH_KEY)
            self._moved_integration(commit, tree, new_oid)
            return commit

    def _moved_integration(self, commit: str, tree: str, integration: str) -> None:
        self._tip, self._tree = commit, tree
        self._integration, self._integration_ref = integration, True

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the ref process and release the run's lock (idempotent)."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._updater.close()
            with contextlib.suppress(OSError):
                self._owner.unlink(missing_ok=True)
            self._lock.release(force=True)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger(run={self.run!r}, tip={self._tip[:12]!r}, closed={self._closed})"
