"""Re-integration of a run onto a moved target (``uet land --rebase``).

Every committed candidate of the run, in the order it was integrated (a topological order), is
made again onto the new tip and judged again through the one verify path
(``verify.verify_candidate``: acceptance when its tree differs from the one verified before,
the base's pre-merge hooks always). A candidate whose change the new tip already holds (the
same work landed by another run) is skipped, and the observer is told. All pass -> the
integration ref moves to the new chain in one ``run: rebase`` ledger event (``Uet-Onto``,
``Uet-Previous-Integration``, ``Uet-Integration``, and ``Uet-Already-Applied`` naming the
skipped workstreams) and the caller lands it. Any conflict or failure -> ``UetError`` (exit 1)
and nothing moves: the run's integration ref keeps the work as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from uet_git.engine.events import Observer
from uet_git.engine.guard import TamperGuard
from uet_git.engine.inputs import workstreams_from_record
from uet_git.engine.options import RunOptions
from uet_git.engine.seed import recorded_config
from uet_git.engine.slots import make_pool
from uet_git.engine.verify import (
    Bench,
    Candidate,
    Outcome,
    checks_at,
    make_candidate,
    verify_candidate,
)
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import odb
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.layout import ALREADY_APPLIED
from uet_git.ledger.states import State
from uet_git.ledger.writer import Ledger
from uet_git.spec.models import Workstream
from uet_git.workers.sandbox import available


@dataclass
class RebaseResult:
    tip: str  # the integration tip after the re-integration
    integrated: list[str] = field(default_factory=list)  # re-integrated, in order
    skipped: list[str] = field(default_factory=list)  # their change is already in ``onto``


def committed_in_order(repo: Repo, ledger: Ledger) -> list[str]:
    """The run's committed workstreams in the order they were integrated."""
    states = ledger.states()
    order: list[str] = []
    for e in query.history(repo, ledger.run):
        if e.to == State.COMMITTED and e.ws and e.ws not in order:
            order.append(e.ws)
    return [ws for ws in order if ws in states and states[ws].state == State.COMMITTED]


def remake_chain(repo: Repo, ledger: Ledger, onto: str, ws_ids: list[str],
                 workstreams: Mapping[str, Workstream], options: RunOptions,
                 observer: Observer, *, step: str, where: str, jobs: int = 1,
                 conflict_hint: str = "", skipped_note: str = "",
                 made_as: str = "re-made {ws} onto {onto}") -> RebaseResult:
    """The candidates of ``ws_ids`` (committed workstreams, in integration order) made again
    one after another onto ``onto`` and each judged through the one verify path, without
    moving any ref; a change already in the chain is skipped and said. ``step`` names the logs
    (``logs/RUN/STEP/WS``) and the judging's label. A missing definition, a conflict or a
    failed verdict raises UetError (exit 1) starting with ``where``: nothing lands."""
    config = recorded_config(repo, ledger)
    checks = checks_at(repo, ledger.base, config)
    states = ledger.states()
    pool = make_pool(repo, config, jobs)
    sandboxed = config.sandbox.mode == "bwrap" and available() is None
    bench = Bench(ledger.run, ledger.target, pool, observer,
                  guard=TamperGuard(repo, sandboxed=sandboxed))
    log_root = repo.uet_dir / "logs" / ledger.run / step
    result = RebaseResult(onto)
    try:
        for ws_id in ws_ids:
            rec = states[ws_id]
            ws = workstreams.get(ws_id)
            if ws is None or rec.candidate is None or rec.patch is None:
                raise UetError(f"{where}: the ledger has no workstream definition or candidate "
                               f"for {ws_id}; nothing landed", exit_code=EXIT_WORK_FAILED)
            made = make_candidate(repo, rec.candidate, result.tip)
            if made.conflicts:
                raise UetError(f"{where}: {ws_id} conflicts in "
                               f"{', '.join(made.conflicts[:10])}; nothing landed"
                               f"{conflict_hint}", exit_code=EXIT_WORK_FAILED)
            if made.already_applied or made.commit is None:
                observer.message(f"{ws_id}: its change is already in {onto[:12]}{skipped_note}")
                result.skipped.append(ws_id)
                continue
            log_dir = log_root / ws_id
            log_dir.mkdir(parents=True, exist_ok=True)
            cand = Candidate(ws, rec.attempt or 1, rec.patch, made.commit, result.tip,
                             verified=rec.candidate)
            verdict = verify_candidate(repo, cand, checks, bench, log_dir=log_dir,
                                       label=f"{ledger.run}/{ws_id}/{step}")
            if verdict.outcome is not Outcome.OK:
                raise UetError(f"{where}: {ws_id}: {verdict.detail or verdict.outcome}; "
                               "nothing landed", exit_code=EXIT_WORK_FAILED)
            observer.message(made_as.format(ws=ws_id, onto=onto[:12])
                             + f" as {made.commit[:12]}")
            result.tip = made.commit
            result.integrated.append(ws_id)
    finally:
        pool.close(remove=not options.keep_worktrees)
    return result


def reintegrate(repo: Repo, ledger: Ledger, onto: str, options: RunOptions,
                observer: Observer) -> RebaseResult:
    """Re-integrate the run's committed work onto ``onto`` (see the module doc)."""
    try:
        onto_oid = odb.get_commit(repo, onto).oid
    except odb.MissingObject:
        raise UetError(f"rebase of run {ledger.run}: {onto!r} is not a commit") from None
    old_tip = ledger.integration_tip()
    workstreams = {ws.id: ws for ws in workstreams_from_record(ledger.plan or {})}
    result = remake_chain(
        repo, ledger, onto_oid, committed_in_order(repo, ledger), workstreams, options,
        observer, step="rebase", where=f"re-integrating run {ledger.run} onto {onto_oid[:12]}",
        conflict_hint=" (resolve on the target, or `uet rollback`/`uet retry`)",
        skipped_note="; not integrated again", made_as="re-integrated {ws} onto the new tip")
    if result.tip != old_tip:
        _move_integration(ledger, result, old=old_tip, onto=onto_oid)
    return result


def _move_integration(ledger: Ledger, result: RebaseResult, *, old: str, onto: str) -> str:
    """The one move of the integration ref that is not a fast-forward, recorded and made in
    one ledger transaction (``Ledger.rebase_integration``). Returns the ledger commit."""
    body = (f"re-integrated {len(result.integrated)} committed workstreams onto {onto[:12]} "
            f"(the target moved): {', '.join(result.integrated) or 'none'}\n")
    if result.skipped:
        body += (f"already in {onto[:12]}, not integrated again: "
                 f"{', '.join(result.skipped)}\n")
    body += f"integration: {old[:12]} -> {result.tip[:12]}"
    trailers = {ALREADY_APPLIED: ",".join(result.skipped)} if result.skipped else None
    try:
        return ledger.rebase_integration(onto, result.tip, summary=body, old=old,
                                         trailers=trailers)
    except RefConflict as exc:
        raise UetError(f"run {ledger.run}: rebase not recorded: {exc}") from None
