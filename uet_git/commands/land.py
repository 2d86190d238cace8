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
  committed patches onto the new tip (re-verifying each) and lands that. When the ledger shows a
  tool moved the target during the run (a workstream quarantined ``tampered``), the message says
  so and ``--rebase`` is refused: it would build on the tool's commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from uet_git.commands.journal import (
    LAND_EVENT,
    ROLLBACK_EVENT,
    branch_name,
    branch_ref,
    journaled_move,
    landing_blockers,
    record_landing,
    recover_landing,
    short,
)
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.options import RunOptions
from uet_git.engine.rebase import reintegrate
from uet_git.errors import UetError
from uet_git.gitrepo.merge import count_commits, is_ancestor
from uet_git.gitrepo.odb import has_object
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.layout import integration_ref
from uet_git.ledger.writer import Ledger

__all__ = ["LAND_EVENT", "ROLLBACK_EVENT", "LandEvent", "LandResult", "branch_name",
           "branch_ref", "land", "land_events", "landing_blockers", "recorded_tip",
           "recover_landing", "short"]

_OID = re.compile(r"\b[0-9a-f]{40}\b")


@dataclass
class LandResult:
    landed: bool
    message: str
    target_oid: str | None  # the target's oid after the call (None: the branch does not exist)


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
    return sorted(ws for ws, rec in ledger.states().items() if rec.state == "rolled-back")


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
         options: RunOptions | None = None, observer: Observer | None = None) -> LandResult:
    """Fast-forward the run's target branch to its recorded integration tip (module doc).
    An interrupted landing or rollback of the run is finished or undone first."""
    if not ledger.target:
        raise UetError(f"run {ledger.run} has no target branch; nothing to land")
    recovered = recover_landing(repo, ledger)
    result = _land(repo, ledger, rebase=rebase, options=options,
                   observer=observer or NullObserver())
    if recovered:
        result.message = f"{recovered}; {result.message}"
    return result


def _land(repo: Repo, ledger: Ledger, *, rebase: bool, options: RunOptions | None,
          observer: Observer) -> LandResult:
    run, target = ledger.run, ledger.target
    ref, name = branch_ref(target), branch_name(target)
    iref = integration_ref(run)
    if rolled_back(ledger):
        return LandResult(False, f"run {run} was rolled back; nothing landed (start a new run "
                                 "with `uet run` to land its work again)", repo.read_ref(ref))
    tip, problem = recorded_tip(repo, ledger)
    old = repo.read_ref(ref)
    if problem is not None:
        return LandResult(False, problem, old)
    if old is None:
        return LandResult(False, f"target branch {name} does not exist; nothing landed, "
                                 f"{iref} is kept: create it, then run `uet land {run}`", None)
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
                                     f"`uet show {tool} --run {run}`); nothing landed, and "
                                     f"--rebase would build on that commit: put {name} back "
                                     f"(`git reflog {name}`), then run `uet land {run}`", old)
        if rebase:
            return _rebase_and_land(repo, ledger, old, options, observer)
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
