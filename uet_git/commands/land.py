"""Landing: the target branch fast-forwards to the integration tip the run's ledger recorded.

Rules (DESIGN.md, "Rules that are never broken"):

- What may land comes from the ledger alone: the tip recorded by the last transition that moved
  the integration (``Uet-Integration``), never the ref ``refs/uet/integration/RUN`` a tool could
  have moved. A ref that disagrees is refused in one line naming both; ``uet fsck --repair``
  resets it from the ledger.
- The target only moves with a compare-and-swap, only forward, and each checkout of it is
  updated like ``git merge --ff-only``: local changes to paths the landing does not change are
  kept byte for byte; a local change to a landed path, an ignored or untracked file in the way,
  an operation in progress (rebase, merge, cherry-pick, revert, bisect, am) or a held
  ``index.lock`` refuses, with nothing touched (``gitrepo.branch``).
- Every landing is journaled (``journal.py``): ``run: land-intent`` before any checkout is
  touched, then the move, then ``run: land`` (``Uet-Branch``, ``Uet-Previous``,
  ``Uet-Landed``, ``Uet-Intent``), so ``uet rollback`` knows what each landing brought in and a
  landing cut short by a kill is finished or undone by the next ``uet land``, ``uet resume`` or
  ``uet rollback`` (``recover_landing``).
- If the target moved since the run's base, nothing lands; ``--rebase`` re-integrates the
  committed patches onto the new tip (re-verifying each) and lands that.
- Partial landing (``only`` / ``exclude``): a subset of the committed workstreams that is
  closed under dependencies (refused with the missing ones otherwise) is re-made onto the
  target's tip, each candidate re-verified through the one verify path
  (``verify.verify_candidate``, as ``--rebase`` does), and the target fast-forwards to that
  chain; the landing records ``Uet-Partial`` (the landed workstreams). The rest are then
  re-made on top of it (re-verified) and the integration ref moves there (``run: rebase``),
  so a later ``uet land RUN`` lands them with a fast-forward; if they do not re-make, the
  integration ref is kept and ``uet land RUN --rebase`` lands them later.
- ``dry_run``: what would move (the target, old -> new, and the workstreams) is said and
  nothing is written: no ref, no ledger event, no recovery of an interrupted landing.
- When the ledger shows a tool moved the target during the run (a workstream quarantined
  ``tampered``), the message says so and ``--rebase`` is refused: it would build on the
  tool's commit.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field

from uet_git.commands.journal import (
    LAND_EVENT,
    ROLLBACK_EVENT,
    branch_name,
    branch_ref,
    journaled_move,
    landing_blockers,
    open_intent,
    record_landing,
    recover_landing,
    short,
)
from uet_git.commands.respec import recorded_workstreams
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.options import RunOptions
from uet_git.engine.rebase import RebaseResult, committed_in_order, reintegrate, remake_chain
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo.merge import count_commits, is_ancestor
from uet_git.gitrepo.odb import has_object
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.layout import ALREADY_APPLIED, integration_ref
from uet_git.ledger.query import plan_deps
from uet_git.ledger.writer import Ledger

__all__ = ["LAND_EVENT", "ROLLBACK_EVENT", "LandEvent", "LandResult", "branch_name",
           "branch_ref", "land", "land_events", "landing_blockers", "recorded_tip",
           "recover_landing", "short"]

_OID = re.compile(r"\b[0-9a-f]{40}\b")
PARTIAL = query.PARTIAL_TRAILER  # on a partial landing: the workstreams it landed


@dataclass
class LandResult:
    landed: bool
    message: str
    target_oid: str | None  # the target's oid after the call (None: the branch does not exist)
    would: list[str] = field(default_factory=list)  # dry run: one line per thing that would move


@dataclass
class LandEvent:
    """One recorded landing: the target moved from ``previous`` to ``landed``."""

    oid: str  # the ledger commit
    target: str
    landed: str
    previous: str


def land_events(repo: Repo, run: str) -> list[LandEvent]:
    """The run's recorded landings, oldest first."""
    out = []
    for e in query.read_ledger(repo, run).run_events(LAND_EVENT):
        landed = e.trailers.get("Uet-Landed")
        previous = e.trailers.get("Uet-Previous")
        if landed and previous and e.subject == LAND_EVENT:
            out.append(LandEvent(e.oid, e.trailers.get("Uet-Branch", ""), landed, previous))
    return out


def rolled_back(ledger: Ledger) -> list[str]:
    """The rolled-back workstreams when the run was rolled back (``run: rollback``), else
    empty: a committed workstream ``uet drop`` took out before landing is rolled-back too,
    and the rest of the run still lands."""
    states = ledger.states()
    rolled = sorted(ws for ws, rec in states.items() if rec.state == "rolled-back")
    events = query.read_ledger(ledger.repo, ledger.run).run_events(ROLLBACK_EVENT) \
        if rolled else []
    if not any(e.subject == ROLLBACK_EVENT for e in events):
        return []
    return rolled


def recorded_tip(repo: Repo, ledger: Ledger) -> tuple[str, str | None]:
    """``(tip, problem)``: the integration tip the ledger recorded, and the one-line refusal
    when ``refs/uet/integration/RUN`` disagrees with it (None when it agrees or was removed by
    ``uet gc``). The writer holding the run's lock read the tip from the ledger history
    (``ledger.query.recorded_integration_tip``) when it opened and follows its own records
    since, so no ref is trusted and the history is not read again on each landing."""
    tip = ledger.integration_tip()
    iref = integration_ref(ledger.run)
    have = repo.read_ref(iref)
    if have is not None and have != tip:
        return tip, (f"{iref} is at {short(have)} but the ledger recorded {short(tip)}; "
                     f"nothing landed: run `uet fsck --repair {ledger.run}` to reset it from "
                     f"the ledger, then `uet land {ledger.run}`")
    return tip, None


def target_tampering(repo: Repo, ledger: Ledger, ref: str, now: str) -> str | None:
    """The workstream whose tool moved ``ref`` during the run, when the target still is (or
    builds on) the commit the tool put there; None otherwise. Read from the ledger: a
    ``tampered`` quarantine's summary has a line ``ref REF moved OLD -> NEW`` (or ``ref REF
    created at NEW``) per ref the tool changed, with full oids."""
    for ws, rec in sorted(ledger.states().items()):
        if rec.reason != "tampered":
            continue
        for e in reversed(query.history(repo, ledger.run, ws)):
            if e.reason != "tampered":
                continue
            for line in e.summary.splitlines():
                if not line.startswith(f"ref {ref} ") or \
                        not (" moved " in line or " created at " in line):
                    continue
                oids = _OID.findall(line)
                put = oids[-1] if oids else None  # the value the tool left
                if put is None or not has_object(repo, put):
                    continue
                # The target is the tool's value, or builds on a commit the tool brought in
                # (one the run's base does not have: building on an old commit is normal).
                if put == now or (is_ancestor(repo, put, now)
                                  and not is_ancestor(repo, put, ledger.base)):
                    return ws
            break
    return None


def land(repo: Repo, ledger: Ledger, *, rebase: bool = False,
         options: RunOptions | None = None, observer: Observer | None = None,
         only: Collection[str] | None = None, exclude: Collection[str] | None = None,
         dry_run: bool = False) -> LandResult:
    """Fast-forward the run's target branch to its recorded integration tip (module doc),
    or to a re-verified chain of the workstreams ``only`` names / ``exclude`` leaves out.
    An interrupted landing or rollback of the run is finished or undone first (not on a
    ``dry_run``, which writes nothing)."""
    if not ledger.target:
        raise UetError(f"run {ledger.run} has no target branch; nothing to land")
    keep = select(repo, ledger, only, exclude) if (only is not None or exclude) else None
    if dry_run:
        return _dry_run(repo, ledger, rebase=rebase, keep=keep)
    recovered = recover_landing(repo, ledger)
    obs = observer or NullObserver()
    if keep is not None:
        result = _land_partial(repo, ledger, keep, options, obs)
    else:
        result = _land(repo, ledger, rebase=rebase, options=options, observer=obs)
    if recovered:
        result.message = f"{recovered}; {result.message}"
    return result


def partially_landed(repo: Repo, run: str) -> list[str]:
    """The workstreams earlier partial landings of the run brought onto the target."""
    out: list[str] = []
    for e in query.read_ledger(repo, run).run_events(LAND_EVENT):
        for ws in (e.trailers.get(PARTIAL) or "").split(","):
            if ws and ws not in out:
                out.append(ws)
    return out


def _requires(deps: dict[str, list[str]], ws: str) -> list[str]:
    """Every transitive dependency of ``ws``."""
    seen: list[str] = []
    stack = list(deps.get(ws, []))
    while stack:
        d = stack.pop()
        if d not in seen:
            seen.append(d)
            stack.extend(deps.get(d, []))
    return seen


def select(repo: Repo, ledger: Ledger, only: Collection[str] | None,
           exclude: Collection[str] | None) -> list[str] | None:
    """The committed workstreams a partial landing lands, in integration order; None when
    that is every committed workstream (a plain landing). ``exclude`` also leaves out every
    workstream that depends on an excluded one. A name that is not committed, an
    empty selection, or a selection that leaves out a dependency (not landed earlier) of a
    selected one is a one-line UetError naming them."""
    committed = committed_in_order(repo, ledger)
    states = ledger.states()
    for ws in [*(only or ()), *(exclude or ())]:
        if ws not in committed:
            state = states[ws].state if ws in states else "not a workstream of the run"
            raise UetError(f"{ws} is not a committed workstream of run {ledger.run} ({state});"
                           f" committed: {', '.join(committed) or 'none'}",
                           exit_code=EXIT_WORK_FAILED)
    done = partially_landed(repo, ledger.run)
    deps = plan_deps(ledger.plan)
    excluded = set(exclude or ())
    # --exclude leaves out what needs an excluded workstream too (it could not land alone).
    keep = [ws for ws in committed if (only is None or ws in only) and ws not in excluded
            and not excluded.intersection(_requires(deps, ws)) and ws not in done]
    if not keep:
        raise UetError(f"nothing selected to land in run {ledger.run} (already landed: "
                       f"{', '.join(done) or 'none'})", exit_code=EXIT_WORK_FAILED)
    missing = {ws: [d for d in _requires(deps, ws) if d not in keep and d not in done]
               for ws in keep}
    gaps = [f"{ws} needs {', '.join(ds)}" for ws, ds in missing.items() if ds]
    if gaps:
        raise UetError(f"the selection of run {ledger.run} is not closed under dependencies: "
                       f"{'; '.join(gaps)}; nothing landed (select those too, or leave the "
                       "dependents out)", exit_code=EXIT_WORK_FAILED)
    if not done and keep == committed:
        return None
    return keep


def _land(repo: Repo, ledger: Ledger, *, rebase: bool, options: RunOptions | None,
          observer: Observer) -> LandResult:
    old = _refusal(repo, ledger)
    if isinstance(old, LandResult):
        return old
    run, target = ledger.run, ledger.target
    assert target is not None
    ref, name = branch_ref(target), branch_name(target)
    iref = integration_ref(run)
    tip = ledger.integration_tip()
    if old == tip:
        _record_if_missing(repo, ledger, target, tip)
        return LandResult(True, f"{name} is already at {short(tip)}; nothing to land", tip)
    if is_ancestor(repo, tip, old):
        return LandResult(True, f"{name} ({short(old)}) already contains {iref} "
                                f"({short(tip)}); nothing to land", old)
    if not is_ancestor(repo, old, tip):
        tool = target_tampering(repo, ledger, ref, old)
        if tool is not None:
            return LandResult(False, f"{name} is at {short(old)}, which the tool of {tool} put "
                                     f"there during run {run} (quarantined: tampered, see "
                                     f"`uet show {tool} {run}`); nothing landed, and "
                                     f"--rebase would build on that commit: put {name} back "
                                     f"(`git reflog {name}`), then run `uet land {run}`", old)
        if rebase:
            return _rebase_and_land(repo, ledger, old, options, observer)
        part = partially_landed(repo, run)
        if part:
            return LandResult(False, f"{name} holds a partial landing of run {run} "
                                     f"({', '.join(part)}); nothing landed: run `uet land "
                                     f"{run} --rebase` to land the rest", old)
        return LandResult(False, f"{name} moved to {short(old)} since run {run} started; "
                                 f"nothing landed, {iref} is kept: run `uet land {run} --rebase` "
                                 "to re-integrate onto the new tip and re-verify", old)
    count = count_commits(repo, old, tip)
    what = f"{name}: {short(old)} -> {short(tip)} ({count} commit{'s' * (count != 1)})"
    move = journaled_move(repo, ledger, "land", ref, old, tip, body=what)
    if not move.moved:
        now = repo.read_ref(ref)
        if move.blocked:
            return LandResult(False, f"{move.problem}; nothing landed, {iref} is kept: then run "
                                     f"`uet land {run}`", now)
        again = "" if now == old else f" (with --rebase if {name} moved on)"
        return LandResult(False, f"{move.problem}; nothing landed, {iref} is kept: run "
                                 f"`uet land {run}` again{again}", now)
    where = f" and updated the checkout at {', '.join(map(str, move.updated))}" \
        if move.updated else ""
    record_landing(ledger, target, old, tip, what + where, move.intent)
    return LandResult(True, f"landed run {run} on {what}{where}", tip)


def _record_if_missing(repo: Repo, ledger: Ledger, target: str, tip: str) -> None:
    """The target already holds the tip: if no landing of it is recorded (a crash between the
    ref update and the ledger event), record it now so rollback knows what was landed."""
    if tip == ledger.base:
        return
    events = land_events(repo, ledger.run)
    if any(e.landed == tip for e in events):
        return
    previous = events[-1].landed if events else ledger.base
    if previous is None or not is_ancestor(repo, previous, tip):
        return
    record_landing(ledger, target, previous, tip,
                   f"{branch_name(target)} found at {short(tip)}: landing recorded after the fact")


def _rebase_and_land(repo: Repo, ledger: Ledger, old: str, options: RunOptions | None,
                     observer: Observer) -> LandResult:
    """Re-integrate the committed work onto the moved target ``old`` (re-verified; a conflict
    or a failure raises, nothing moved), then land it."""
    res = reintegrate(repo, ledger, old, options or RunOptions(), observer)
    n = len(res.integrated)
    note = f"re-integrated {n} workstream{'s' * (n != 1)} onto {short(old)}"
    if res.skipped:
        note += (f" ({', '.join(res.skipped)} skipped: {branch_name(ledger.target)} already "
                 "has their changes)")
    landed = _land(repo, ledger, rebase=False, options=options, observer=observer)
    landed.message = f"{note}; {landed.message}"
    return landed


def remake(repo: Repo, ledger: Ledger, onto: str, keep: list[str], options: RunOptions,
           observer: Observer) -> RebaseResult:
    """The candidates of ``keep`` (committed workstreams, in integration order, with their
    latest respec) made again onto ``onto`` and judged, without moving any ref
    (``engine.rebase.remake_chain``). A conflict or a failure raises UetError (exit 1):
    nothing lands."""
    workstreams = {ws.id: ws for ws in recorded_workstreams(repo, ledger)}
    return remake_chain(repo, ledger, onto, keep, workstreams, options, observer,
                        step="partial", jobs=options.jobs or 1,
                        where=f"landing {', '.join(keep)} of run {ledger.run} onto {onto[:12]}",
                        made_as="re-made {ws} onto the target")


def _refusal(repo: Repo, ledger: Ledger) -> LandResult | str:
    """Why nothing may land at all (rolled back, no target, the integration ref disagrees
    with the ledger), or else the target's oid (read once: the landing starts from it)."""
    run, ref, name = ledger.run, branch_ref(ledger.target or ""), branch_name(ledger.target or "")
    if rolled_back(ledger):
        return LandResult(False, f"run {run} was rolled back; nothing landed (start a new run "
                                 "with `uet run` to land its work again)", repo.read_ref(ref))
    _, problem = recorded_tip(repo, ledger)
    old = repo.read_ref(ref)
    if problem is not None:
        return LandResult(False, problem, old)
    if old is None:
        return LandResult(False, f"target branch {name} does not exist; nothing landed, "
                                 f"{integration_ref(run)} is kept: create it, then run "
                                 f"`uet land {run}`", None)
    return old


def _land_partial(repo: Repo, ledger: Ledger, keep: list[str], options: RunOptions | None,
                  observer: Observer) -> LandResult:
    old = _refusal(repo, ledger)
    if isinstance(old, LandResult):
        return old
    run, target = ledger.run, ledger.target
    assert target is not None
    ref, name = branch_ref(target), branch_name(target)
    tool = target_tampering(repo, ledger, ref, old)
    if tool is not None:
        return LandResult(False, f"{name} is at {short(old)}, which the tool of {tool} put "
                                 f"there during run {run}; nothing landed: put {name} back "
                                 f"(`git reflog {name}`), then run `uet land {run}`", old)
    chain = remake(repo, ledger, old, keep, options or RunOptions(), observer)
    landed = chain.integrated + chain.skipped
    rest = [ws for ws in committed_in_order(repo, ledger)
            if ws not in landed and ws not in partially_landed(repo, run)]
    if chain.tip == old:
        return LandResult(True, f"{name} ({short(old)}) already has the changes of "
                                f"{', '.join(keep)}; nothing to land", old)
    count = count_commits(repo, old, chain.tip)
    what = (f"{name}: {short(old)} -> {short(chain.tip)} ({count} commit{'s' * (count != 1)}: "
            f"{', '.join(chain.integrated)}; not landed: {', '.join(rest) or 'none'})")
    move = journaled_move(repo, ledger, "land", ref, old, chain.tip, body=what)
    if not move.moved:
        return LandResult(False, f"{move.problem}; nothing landed: run `uet land {run} "
                                 f"--only {','.join(keep)}` again", repo.read_ref(ref))
    where = f" and updated the checkout at {', '.join(map(str, move.updated))}" \
        if move.updated else ""
    record_landing(ledger, target, old, chain.tip, what + where, move.intent,
                   trailers={PARTIAL: ",".join(landed)})
    later = _reintegrate_rest(repo, ledger, old, chain, rest, options or RunOptions(),
                              observer)
    return LandResult(True, f"landed part of run {run} on {what}{where}; {later}", chain.tip)


def _reintegrate_rest(repo: Repo, ledger: Ledger, old: str, chain: RebaseResult, rest: list[str],
                      options: RunOptions, observer: Observer) -> str:
    """After a partial landing: the workstreams left out re-made on top of what landed (each
    re-verified) and the integration ref moved to that chain (``run: rebase`` onto the
    target's value before the landing), so ``uet land RUN`` later lands them with a plain
    fast-forward. When they do not re-make (a conflict, a failure), the integration ref is
    left as it was: ``uet land RUN --rebase`` tries again later. Returns what happened, for
    the message."""
    run = ledger.run
    if not rest:
        return "nothing left to land"
    try:
        full = remake(repo, ledger, chain.tip, rest, options, observer)
    except UetError as exc:
        return (f"the rest ({', '.join(rest)}) was not re-integrated on top ({exc}); "
                f"`uet land {run} --rebase` lands it later")
    prev = ledger.integration_tip()
    skipped = chain.skipped + full.skipped
    body = (f"partial landing of {', '.join(chain.integrated)}: the rest re-integrated on top "
            f"of it: {', '.join(full.integrated) or 'none'}\n"
            f"integration: {prev[:12]} -> {full.tip[:12]}")
    try:
        ledger.rebase_integration(old, full.tip, summary=body, old=prev,
                                  trailers={ALREADY_APPLIED: ",".join(skipped)}
                                  if skipped else None)
    except RefConflict as exc:
        return f"the rest was not recorded ({exc}); `uet land {run} --rebase` lands it later"
    return (f"the rest ({', '.join(rest)}) re-integrated on top as {integration_ref(run)} "
            f"{full.tip[:12]}: `uet land {run}` lands it")


def _dry_run(repo: Repo, ledger: Ledger, *, rebase: bool, keep: list[str] | None
             ) -> LandResult:
    """What ``land`` would move, one line each; nothing is written."""
    run, target = ledger.run, ledger.target
    assert target is not None
    ref, name = branch_ref(target), branch_name(target)
    iref = integration_ref(run)
    old = _refusal(repo, ledger)
    if isinstance(old, LandResult):
        old.message = f"dry run: {old.message}"
        return old
    tip = ledger.integration_tip()
    done = partially_landed(repo, run)
    committed = [ws for ws in committed_in_order(repo, ledger) if ws not in done]
    would: list[str] = []
    if open_intent(repo, run) is not None:
        would.append("an interrupted landing or rollback of the run would be finished or "
                     "undone first")
    if keep is not None:
        rest = [ws for ws in committed if ws not in keep]
        would += [f"would re-make {', '.join(keep)} onto {name} ({short(old)}), re-verifying "
                  "each",
                  f"would move {ref}: {short(old)} -> the re-made chain",
                  f"would not land: {', '.join(rest) or 'none'}"]
        if rest:
            would.append(f"would re-make {', '.join(rest)} on top (re-verifying each) and "
                         f"move {iref}: {short(tip)} -> that chain")
    elif old == tip or is_ancestor(repo, tip, old):
        return LandResult(True, f"dry run: {name} ({short(old)}) already holds {iref} "
                                f"({short(tip)}); nothing would move", old)
    elif is_ancestor(repo, old, tip):
        count = count_commits(repo, old, tip)
        would.append(f"would move {ref}: {short(old)} -> {short(tip)} ({count} commit"
                     f"{'s' * (count != 1)}: {', '.join(committed) or 'none'})")
    elif rebase:
        would += [f"would re-integrate {', '.join(committed) or 'nothing'} onto {name} "
                  f"({short(old)}), re-verifying each",
                  f"would move {iref}: {short(tip)} -> the re-integrated chain",
                  f"would move {ref}: {short(old)} -> the re-integrated chain"]
    else:
        return LandResult(False, f"dry run: {name} moved to {short(old)} since run {run} "
                                 f"started; nothing would land (`uet land {run} --rebase`)",
                          old)
    return LandResult(True, f"dry run of `uet land {run}`: nothing written", old, would)
