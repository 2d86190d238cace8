"""``uet rollback``: undo what a run landed on its target, keeping every record.

What a run landed is read from its ``run: land`` ledger events (``Uet-Previous`` ->
``Uet-Landed``, see land.py), never from a ref. Two ways back, both journaled like a landing
(``run: rollback-intent`` before any checkout is touched, see journal.py), with a
compare-and-swap on the target and each checkout of it updated only where the user has no
change of their own on the paths that move:

- reset: the target still points at the last landing and the landings are contiguous (each one
  started where the previous one ended): the target moves back to where the first landing found
  it (the run's base, unless the run was re-integrated onto a moved target).
- revert: the target moved on (or someone else's commits sit between landings): one revert
  commit per landed commit, newest first (reverse topological order), each built in memory as a
  3-way merge (base = the landed commit, ours = the new tip, theirs = its parent). A conflict
  stops everything with a one-line message naming the workstream; nothing moves. Revert commits
  carry ``Uet-Reverts: <oid>`` (and no ``Uet-Workstream``, so ``uet check`` does not mistake
  them for patches).

Then a ``run: rollback`` ledger event, and every ``committed`` workstream of the run becomes
``rolled-back`` (committed but not yet landed ones too: the run as a whole is undone, and
``uet land`` refuses a rolled-back run). Nothing is deleted from the ledger.

Outcomes: rolled back -> exit 0; nothing to do (the run landed nothing, or it is already rolled
back) -> exit 1 with one line; refused (conflict, local changes in the way, lost race) -> exit 1
with one line that says what to do. An interrupted landing or rollback of the run is finished
or undone first; re-running after a crash between moving the target and recording is safe.

``dry_run``: the same decision is taken (reset or revert, the revert commits are built as
loose objects so a conflict is found) and said in ``would``, one line per ref that would move
(old -> new) and the workstreams that would become rolled-back; no ref and no ledger event is
written, and an interrupted landing is not recovered (it is named).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from uet_git.commands.journal import journaled_move, open_intent, record_rollback, recover
from uet_git.commands.land import LandEvent, branch_name, branch_ref, land_events, short
from uet_git.gitrepo.merge import is_ancestor, merge_trees, rev_list
from uet_git.gitrepo.objects import make_commit
from uet_git.gitrepo.odb import get_commit, tree_of
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.takeover import open_ledger
from uet_git.ledger.writer import Ledger


@dataclass
class RollbackResult:
    rolled_back: bool
    message: str
    method: str | None = None  # 'reset' | 'revert' | None (nothing moved)
    target_oid: str | None = None  # the target's oid after the call
    workstreams: list[str] = field(default_factory=list)  # now rolled-back
    reverts: list[str] = field(default_factory=list)  # revert commits created (oldest first)
    would: list[str] = field(default_factory=list)  # dry run: what would move, one line each

    @property
    def exit_code(self) -> int:
        return 0 if self.rolled_back else 1


def rollback_run(repo: Repo, run_id: str, *, dry_run: bool = False) -> RollbackResult:
    """Undo what run ``run_id`` landed (takes the run's writer lock); with ``dry_run`` only
    say what would move."""
    with open_ledger(repo, run_id) as ledger:
        return rollback(repo, ledger, dry_run=dry_run)


def _landed_commits(repo: Repo, events: list[LandEvent]) -> list[str]:
    """Every commit the landings brought onto the target, newest first."""
    seen: set[str] = set()
    out: list[str] = []
    for e in reversed(events):
        for c in rev_list(repo, "--topo-order", e.landed, f"^{e.previous}"):
            if c not in seen:
                seen.add(c)
                out.append(c)
    return out


def _already_reverted(repo: Repo, tip: str, since: str) -> set[str]:
    """The commits a revert between ``since`` and ``tip`` names in ``Uet-Reverts``."""
    out: set[str] = set()
    for c in rev_list(repo, tip, f"^{since}"):
        reverts = parse_trailers(get_commit(repo, c).message).get("Uet-Reverts")
        if reverts:
            out.add(reverts.strip())
    return out


def rollback(repo: Repo, ledger: Ledger, *, dry_run: bool = False) -> RollbackResult:
    """Undo what ``ledger``'s run landed (see the module doc); an interrupted landing or
    rollback of the run is finished or undone first."""
    if dry_run:
        result = _rollback(repo, ledger, dry_run=True)
        if open_intent(repo, ledger.run) is not None:
            result.would.insert(0, "an interrupted landing or rollback of the run would be "
                                   "finished or undone first")
        return result
    done = recover(repo, ledger)
    if done is not None and done.intent.kind == "rollback" and done.finished:
        # The interrupted rollback is complete now: that was this command's work.
        rolled = sorted(ws for ws, rec in ledger.states().items() if rec.state == "rolled-back")
        return RollbackResult(True, f"rolled back run {ledger.run}: {done.message}",
                              method=done.intent.trailers.get("Uet-Rollback"),
                              target_oid=done.intent.new, workstreams=rolled)
    result = _rollback(repo, ledger)
    if done is not None:
        result.message = f"{done.message}; {result.message}"
    return result


def _rollback(repo: Repo, ledger: Ledger, *, dry_run: bool = False) -> RollbackResult:
    run = ledger.run
    target = ledger.target
    states = ledger.states()
    committed = {ws: rec for ws, rec in states.items() if rec.state == "committed"}
    if not target:
        return RollbackResult(False, f"run {run} has no target branch; nothing to roll back")
    ref, name = branch_ref(target), branch_name(target)
    cur = repo.read_ref(ref)
    events = land_events(repo, run)
    if not events:
        return RollbackResult(False, f"run {run} landed nothing on {name}; nothing to roll "
                                     "back", target_oid=cur)
    if not committed:
        done = sorted(ws for ws, rec in states.items() if rec.state == "rolled-back")
        what = "is already rolled back" if done else "has no committed workstream"
        return RollbackResult(False, f"run {run} {what}; nothing to roll back", target_oid=cur)
    if cur is None:
        return RollbackResult(False, f"target branch {name} does not exist; nothing rolled back")

    by_oid: dict[str, str] = {}
    for ws, rec in committed.items():
        for oid in (rec.candidate, rec.patch):
            if oid:
                by_oid.setdefault(oid, ws)

    def ws_of(commit: str) -> str:
        ws = by_oid.get(commit)
        if ws is None:
            ws = parse_trailers(get_commit(repo, commit).message).get("Uet-Workstream")
        return ws or f"commit {short(commit)}"

    contiguous = all(b.previous == a.landed for a, b in pairwise(events))
    first_prev, last = events[0].previous, events[-1].landed
    method: str
    reverts: list[str] = []
    new = cur
    if contiguous and cur == last:
        method = "reset"
        new = first_prev
        detail = f"{name} reset from {short(cur)} to {short(new)}"
    elif contiguous and cur == first_prev:
        method = "reset"
        detail = f"{name} was already back at {short(cur)}"
    else:
        method = "revert"
        commits = [c for c in _landed_commits(repo, events) if is_ancestor(repo, c, cur)]
        done = _already_reverted(repo, cur, first_prev)
        for c in (c for c in commits if c not in done):
            commit = get_commit(repo, c)
            if commit.parent is None:
                return RollbackResult(False, f"cannot revert {ws_of(c)} ({short(c)}): it is a "
                                             "root commit; nothing rolled back", target_oid=cur)
            merged = merge_trees(repo, c, new, commit.parent)
            if merged.conflicts or merged.tree is None:
                paths = ", ".join(merged.conflicts[:5]) or "unknown paths"
                return RollbackResult(
                    False, f"reverting {ws_of(c)} ({short(c)}) conflicts with {name} at "
                           f"{paths}; nothing rolled back: revert by hand "
                           f"(`git revert {short(c)}`) or resolve and retry", target_oid=cur)
            if str(merged.tree) == tree_of(repo, new):
                continue  # already undone on the target by someone: no empty revert commit
            msg = (f'Revert "{commit.subject}"\n\nThis reverts commit {c}, which uet run {run} '
                   f"landed for workstream {ws_of(c)}.\n\nUet-Reverts: {c}\n")
            new = make_commit(repo, str(merged.tree), [new], msg)
            reverts.append(new)
        if reverts:
            detail = f"{len(reverts)} revert commit{'s' * (len(reverts) != 1)} on {name} " \
                     f"({short(cur)} -> {short(new)})"
        else:
            detail = f"{name} ({short(cur)}) no longer holds what run {run} landed"

    if dry_run:
        would = [f"would {method}: {ref}: {short(cur)} -> {short(new)}"
                 + (f" ({len(reverts)} revert commit{'s' * (len(reverts) != 1)})"
                    if reverts else ""),
                 *(f"would move refs/uet/committed/{run}/{ws} -> refs/uet/rolled-back/{run}/{ws}"
                   for ws in sorted(committed))]
        return RollbackResult(True, f"dry run of `uet rollback {run}`: {detail}; nothing "
                                    "written", method=method, target_oid=cur,
                              workstreams=sorted(committed), would=would)
    intent: str | None = None
    if new != cur:
        move = journaled_move(repo, ledger, "rollback", ref, cur, new, body=detail,
                              trailers={"Uet-Rollback": method})
        if not move.moved:
            now = repo.read_ref(ref)
            if move.blocked:
                return RollbackResult(False, f"{move.problem}; nothing rolled back: then run "
                                             f"`uet rollback {run}`", target_oid=now)
            return RollbackResult(False, f"{move.problem}; nothing rolled back: run "
                                         f"`uet rollback {run}` again", target_oid=now)
        intent = move.intent
        if move.updated:
            detail += f", checkout at {', '.join(map(str, move.updated))} updated"
        if move.note:
            detail += f" ({move.note})"

    rolled = record_rollback(ledger, target=target, method=method, previous=cur, restored=new,
                             detail=detail, intent=intent)
    return RollbackResult(True, f"rolled back run {run}: {detail}; "
                                f"{len(rolled)} workstream{'s' * (len(rolled) != 1)} rolled-back",
                          method=method, target_oid=new, workstreams=rolled, reverts=reverts)
