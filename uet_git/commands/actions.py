"""A user's actions on one workstream of a run: ``uet retry`` and ``uet drop``.

retry: only a ``quarantined`` workstream, or a ``blocked`` one whose dependencies are all
committed now, can be retried. Without ``--reapply`` nothing is recorded here: the engine's
resume, given the workstream in ``only``, starts a new attempt for a quarantined one (and runs the
tool of a blocked one). With ``--reapply`` the existing patch goes back to the integrator: the
move ``quarantined -> queued`` is recorded here, then resume integrates it (re-verifying on the
current tip). Re-applying is refused for patches that never passed validation (``empty``,
``scope-violation``, ``too-large``) and for attempts without a patch. The blocked dependents
that can run once the workstream commits are retried with it.

drop: a ``quarantined`` or ``blocked`` workstream becomes ``dropped``; every dependent of it
(transitively) can then never run, so each one that is blocked (or not started yet) is dropped
as well, and the message lists them. Nothing is deleted from the ledger.

A ``committed`` workstream that has not landed can be dropped too: the integration chain after
its candidate is made again without it (each later candidate re-verified through the one verify
path, ``land.remake``) and the integration ref moves to that chain in one ``run: rebase``
ledger event; the workstream becomes ``rolled-back`` (the ledger's only way out of committed),
with a summary that says it was dropped before landing. Refused, with the list, when a
committed workstream depends on it, and when it has landed (``uet rollback`` undoes that).

``dry_run``: the refs that would move (old -> new) and the workstreams, nothing written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from uet_git.commands.land import partially_landed, remake
from uet_git.commands.respec import record_respec, reread
from uet_git.commands.resume import resume_run
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.options import RunOptions, RunResult
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import odb
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.layout import integration_ref
from uet_git.ledger.query import plan_deps
from uet_git.ledger.writer import Ledger

RETRYABLE = ("quarantined", "blocked")
# Reasons whose patch never passed validation: re-applying it would skip the checks.
NO_REAPPLY = frozenset({"empty", "scope-violation", "too-large"})


def _state(states: Mapping[str, Any], ws: str) -> str | None:
    rec = states.get(ws)
    state = getattr(rec, "state", None)
    return None if state in (None, "pending") else str(state)


def _dependents(deps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {ws: [] for ws in deps}
    for ws, ds in deps.items():
        for d in ds:
            out.setdefault(d, []).append(ws)
    return out


def descendants(deps: Mapping[str, list[str]], ws: str) -> list[str]:
    """Every transitive dependent of ``ws``, in plan (topological) order."""
    dependents = _dependents(deps)
    seen: set[str] = set()
    stack = list(dependents.get(ws, []))
    while stack:
        d = stack.pop()
        if d not in seen:
            seen.add(d)
            stack.extend(dependents.get(d, []))
    order = [w for w in deps if w in seen]
    return order + sorted(seen - set(order))


def _lookup(ledger: Ledger, ws: str) -> tuple[dict[str, Any], dict[str, list[str]], Any]:
    states = dict(ledger.states())
    deps = plan_deps(ledger.plan)
    rec = states.get(ws)
    run = ledger.run
    if rec is None and ws not in deps:
        raise UetError(f"no workstream {ws!r} in run {run} (see `uet status {run}`)")
    if _state(states, ws) is None:
        raise UetError(f"{ws} has not run yet in run {run}; `uet resume {run}` runs it")
    return states, deps, rec


def retry_ws(repo: Repo, run_id: str, ws: str, *, reapply: bool, options: RunOptions,
             observer: Observer | None = None, frozen: bool = False) -> RunResult:
    """Retry ``ws`` (see the module doc) and resume the run on it and the dependents it
    unblocks; returns the engine's result. Unless ``frozen``, the workstream's file is read
    again: when it defines ``ws`` differently now, the new definition is recorded for the
    new attempt (``respec.record_respec``) and the fields that differ are told to the
    observer."""
    observer = observer or NullObserver()
    with Ledger.open(repo, run_id) as ledger:
        states, deps, rec = _lookup(ledger, ws)
        state = _state(states, ws)
        if state not in RETRYABLE:
            raise UetError(f"{ws} is {state}; only quarantined or blocked workstreams can be "
                           "retried")
        unmet = [d for d in deps.get(ws, []) if _state(states, d) != "committed"]
        if unmet:
            d = unmet[0]
            raise UetError(f"{ws} depends on {d}, which is {_state(states, d) or 'not started'}; "
                           f"retry {d} first (`uet retry {d} {run_id}`)")
        if reapply and (state == "blocked" or not rec.patch or rec.reason in NO_REAPPLY):
            if state == "blocked" or not rec.patch:
                raise UetError(f"{ws} has no patch to re-apply ({state}"
                               + (f", {rec.reason}" if rec.reason else "")
                               + "); retry it without --reapply for a new attempt")
            if rec.reason in NO_REAPPLY:
                raise UetError(f"{ws} was quarantined for {rec.reason}; its patch cannot be "
                               "re-applied: retry it without --reapply for a new attempt")
        changed = None if frozen else reread(repo, ledger, ws)
        if changed is not None:
            lines = record_respec(ledger, *changed)
            observer.message(f"{ws}: {changed[1].source} changed since run {run_id} started; "
                             f"the next attempt uses it ({len(lines)} field"
                             f"{'s' * (len(lines) != 1)} differ, --frozen keeps the recorded "
                             "definition):")
            for line in lines:
                observer.message(f"  {line}")
        if reapply:
            ledger.record(ws, "queued", attempt=rec.attempt, patch=rec.patch,
                          summary="re-apply of the same patch requested by `uet retry "
                                  "--reapply`")
        only = {ws, *unblocked_by(deps, states, ws)}
    # The writer lock is released here: resume takes it itself.
    return resume_run(repo, run_id, options, observer, only=only)


def unblocked_by(deps: Mapping[str, list[str]], states: Mapping[str, Any], ws: str) -> list[str]:
    """The dependents of ``ws`` that can run once it commits: blocked or not started, and every
    other dependency committed or itself in this list."""
    chosen: set[str] = {ws}
    out: list[str] = []
    for d in descendants(deps, ws):
        if _state(states, d) not in (None, "blocked"):
            continue
        if all(_state(states, x) == "committed" or x in chosen for x in deps.get(d, [])):
            chosen.add(d)
            out.append(d)
    return out


def drop_ws(repo: Repo, run_id: str, ws: str, *, options: RunOptions | None = None,
            observer: Observer | None = None) -> str:
    """Drop ``ws`` and its dependents that can no longer run (or a committed, not landed
    ``ws``: see the module doc); returns the one-line summary."""
    return drop(repo, run_id, ws, options=options, observer=observer)[0]


def drop(repo: Repo, run_id: str, ws: str, *, dry_run: bool = False,
         options: RunOptions | None = None, observer: Observer | None = None
         ) -> tuple[str, list[str]]:
    """``drop_ws``, and with ``dry_run`` only what would move: returns the one-line summary
    and the lines that say what would move (old -> new), empty unless ``dry_run``."""
    with Ledger.open(repo, run_id) as ledger:
        states, deps, rec = _lookup(ledger, ws)
        state = _state(states, ws)
        if state == "committed":
            return _drop_committed(repo, ledger, ws, deps, dry_run=dry_run,
                                   options=options or RunOptions(),
                                   observer=observer or NullObserver())
        if state not in RETRYABLE:
            raise UetError(f"{ws} is {state}; only quarantined, blocked or committed (not "
                           "landed) workstreams can be dropped")
        also_planned = [d for d in descendants(deps, ws)
                        if _state(states, d) in (None, "blocked")]
        if dry_run:
            would = [f"would move refs/uet/{state}/{run_id}/{ws} -> "
                     f"refs/uet/dropped/{run_id}/{ws}"]
            would += [f"would drop {d} (depends on {ws}): refs/uet/dropped/{run_id}/{d}"
                      for d in also_planned]
            return f"dry run of `uet drop {ws} {run_id}`: nothing written", would
        ledger.record(ws, "dropped", attempt=rec.attempt or 1, patch=rec.patch,
                      summary="dropped by `uet drop`")
        also: list[str] = []
        for d in descendants(deps, ws):
            dstate = _state(states, d)
            why = f"its dependency {ws} was dropped"
            if dstate is None:
                # Never started (an interrupted run): enter the ledger blocked, then dropped.
                ledger.record(d, "blocked", attempt=1, summary=why)
                dstate = "blocked"
                attempt = 1
            else:
                attempt = getattr(states[d], "attempt", None) or 1
            if dstate == "blocked":
                ledger.record(d, "dropped", attempt=attempt, summary=why)
                also.append(d)
    msg = f"dropped {ws} in run {run_id}"
    if also:
        msg += f"; also dropped its dependents that can no longer run: {', '.join(also)}"
    return msg, []


def _chain_commit(repo: Repo, ledger: Ledger, ws: str
                  ) -> tuple[str | None, list[str], str]:
    """On the integration chain (first parents from the recorded tip back to the first commit
    that is not a patch of the run, its start: the base, or where a re-integration put it):
    the commit that brought ``ws`` in (None when none carries ``ws``), the workstreams of the
    commits after it, oldest first, and the chain's start."""
    after: list[str] = []
    found: str | None = None
    start = ledger.base
    for c in odb.walk_commits(repo, ledger.integration_tip(), first_parent=True):
        t = parse_trailers(c.message)
        if c.oid == ledger.base or t.get("Uet-Run") != ledger.run:
            start = c.oid
            break
        name = t.get("Uet-Workstream")
        if name == ws and found is None:
            found = c.oid
        elif name and found is None:
            after.append(name)
    return found, list(reversed(after)), start


def _drop_committed(repo: Repo, ledger: Ledger, ws: str, deps: Mapping[str, list[str]], *,
                    dry_run: bool, options: RunOptions, observer: Observer
                    ) -> tuple[str, list[str]]:
    run = ledger.run
    states = ledger.states()
    needing = [d for d in descendants(deps, ws) if _state(states, d) == "committed"]
    if needing:
        raise UetError(f"{ws} cannot be dropped: committed workstreams depend on it: "
                       f"{', '.join(needing)} (drop those first)", exit_code=EXIT_WORK_FAILED)
    target = ledger.target
    now = repo.read_ref(f"refs/heads/{target}" if target and not target.startswith("refs/")
                        else target or "")
    commit, rest, start = _chain_commit(repo, ledger, ws)
    landed = ws in partially_landed(repo, run) or (
        commit is not None and now is not None and is_ancestor(repo, commit, now))
    if landed:
        raise UetError(f"{ws} has landed on {target}; `uet rollback {run}` undoes a landing",
                       exit_code=EXIT_WORK_FAILED)
    if commit is None:
        raise UetError(f"{ws} is committed but not on the integration chain of run {run} "
                       "(its change was already there); nothing to drop",
                       exit_code=EXIT_WORK_FAILED)
    onto = odb.get_commit(repo, commit).parent
    assert onto is not None
    old = ledger.integration_tip()
    iref = integration_ref(run)
    if dry_run:
        # With nothing after it on the chain, the integration ref simply goes back to its parent.
        moves = [f"would re-make {', '.join(rest)} onto {onto[:12]} without {ws}, "
                 "re-verifying each",
                 f"would move {iref}: {old[:12]} -> the re-made chain"] if rest else \
            [f"would move {iref}: {old[:12]} -> {onto[:12]} (its change is the last on it)"]
        return (f"dry run of `uet drop {ws} {run}`: nothing written", [
            *moves,
            f"would move refs/uet/committed/{run}/{ws} -> refs/uet/rolled-back/{run}/{ws}"])
    chain = remake(repo, ledger, onto, rest, options, observer)
    summary = (f"{ws} dropped before landing by `uet drop`: re-integrated "
               f"{', '.join(chain.integrated) or 'nothing'} onto {onto[:12]} without it\n"
               f"integration: {old[:12]} -> {chain.tip[:12]}")
    # Uet-Onto is the chain's start (fsck reads the whole chain from there), not ``onto``.
    ledger.rebase_integration(start, chain.tip, summary=summary, old=old)
    rec = states[ws]
    ledger.record(ws, "rolled-back", attempt=rec.attempt or 1, patch=rec.patch,
                  candidate=rec.candidate, summary=f"dropped before landing by `uet drop` "
                                                   f"({iref} re-made without it)")
    return (f"dropped {ws} in run {run} before it landed: {iref} {old[:12]} -> "
            f"{chain.tip[:12]} (re-integrated {', '.join(chain.integrated) or 'nothing'}); "
            f"{ws} is rolled-back", [])
