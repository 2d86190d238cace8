"""Landing: the target branch fast-forwards to a run's integration ref, never clobbering.

Rules (DESIGN.md, "Rules that are never broken"): the target only moves with a compare-and-swap
(one ``update-ref --stdin`` transaction with the old value), only forward, and only to the
integration tip, which holds verified candidates only. If the target moved since the run's base
(it is no longer an ancestor of the integration tip) or a checkout of it has local changes,
nothing moves and the message says what to do.

A checkout of the target (the main worktree or a linked one, found with
``git worktree list --porcelain``) is updated the way ``git merge --ff-only`` would, but with a
stricter rule: any tracked change (index or files) refuses, and git's own check refuses when an
untracked file (ignored ones included) would be overwritten. The order is chosen for the race
with a concurrent writer of the branch:

1. ``git update-index --refresh`` + ``git status`` (tracked changes only) in each checkout;
2. ``git read-tree -m -u OLD NEW`` in each checkout: git verifies every entry before writing
   anything, so a file the user touched after step 1 makes it refuse with nothing written;
3. the CAS ``refs/heads/T: OLD -> NEW``. If it fails (someone moved the branch after our read),
   step 2 is undone with ``read-tree -m -u NEW OLD`` so the checkout is exactly as it was.

Updating files before the ref (rather than after) means a lost race never leaves a branch whose
checkout shows the inverse of the landed changes as "local changes"; the window in which the
files are new but HEAD is old is the same one ``git merge`` itself has.

Every landing is recorded as a run-level ledger event ``run: land`` with trailers
``Uet-Branch`` (the target; ``Uet-Target`` is reserved by the writer for ``run: start``),
``Uet-Landed`` (the new target oid) and ``Uet-Previous`` (the old one), so ``uet rollback``
knows exactly what each landing brought in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from uet_git.errors import UetError
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.worktrees import list_worktrees
from uet_git.ledger import query
from uet_git.ledger.layout import integration_ref

if TYPE_CHECKING:
    from uet_git.engine.options import RunOptions
    from uet_git.ledger.writer import Ledger

LAND_EVENT = "run: land"
ROLLBACK_EVENT = "run: rollback"


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


@dataclass
class Checkout:
    path: Path
    head: str | None


@dataclass
class MoveOutcome:
    """Result of moving a branch: ``problem`` None = moved; else ``kind`` says why not."""

    kind: str = "ok"  # ok | dirty | moved | failed
    problem: str | None = None
    updated: list[Path] = field(default_factory=list)


def short(oid: str | None) -> str:
    return (oid or "-")[:12]


def branch_ref(target: str) -> str:
    return target if target.startswith("refs/") else f"refs/heads/{target}"


def branch_name(target: str) -> str:
    return target.removeprefix("refs/heads/")


# --------------------------------------------------------------------------- checkouts


def checkouts_of(repo: Repo, ref: str) -> list[Checkout]:
    """Every existing worktree that has ``ref`` checked out, except uet's own pool.

    Read through ``list_worktrees`` so it waits for the pool's ``git worktree add``: a list
    racing with an add reads a half-written admin dir and fails (``--land continuous``)."""
    own = (repo.common_dir / "uet").resolve()
    found: list[Checkout] = []
    for info in list_worktrees(repo):
        if info.branch != branch_name(ref) or info.bare or info.prunable:
            continue
        p = Path(info.path).resolve()
        if own not in p.parents and p.is_dir():
            found.append(Checkout(path=p, head=info.head))
    return found


def local_changes(repo: Repo, checkout: Path, limit: int = 5) -> list[str]:
    """Tracked changes (staged or not, conflicts included) in a checkout, as ``XY path``."""
    repo.git("update-index", "-q", "--refresh", cwd=checkout, check=False)
    out = repo.git("status", "--porcelain=v1", "-z", "--untracked-files=no",
                   "--ignore-submodules=none", cwd=checkout).stdout
    entries: list[str] = []
    items = out.decode(errors="replace").split("\0")
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if not item:
            continue
        entries.append(item)
        if item[:1] in ("R", "C"):  # a rename carries its source path as the next item
            i += 1
    if len(entries) > limit:
        return [*entries[:limit], f"and {len(entries) - limit} more"]
    return entries


def _read_tree(repo: Repo, checkout: Path, old: str, new: str) -> str | None:
    """Two-tree ``read-tree -m -u``: None on success, else git's first error line."""
    proc = repo.git("read-tree", "-m", "-u", old, new, cwd=checkout, check=False)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0].removeprefix("error: ").removeprefix("fatal: ") if lines else "read-tree failed"


def move_branch(repo: Repo, ref: str, old: str, new: str) -> MoveOutcome:
    """Move ``ref`` from ``old`` to ``new`` with a CAS, updating every clean checkout of it.

    Nothing is forced: a dirty checkout, an untracked file in the way or a lost race leaves
    the ref, the index and the files exactly as they were.
    """
    checkouts = checkouts_of(repo, ref)
    for co in checkouts:
        if co.head is not None and co.head != old:
            return MoveOutcome("moved", f"{ref} is at {short(co.head)} in {co.path}, "
                                        f"not {short(old)}")
        changes = local_changes(repo, co.path)
        if changes:
            shown = ", ".join(changes)
            return MoveOutcome("dirty", f"{branch_name(ref)} is checked out at {co.path} with "
                                        f"local changes ({shown})")
    updated: list[Path] = []
    for co in checkouts:
        err = _read_tree(repo, co.path, old, new)
        if err is not None:
            _undo(repo, updated, old, new)
            return MoveOutcome("dirty", f"{branch_name(ref)} is checked out at {co.path} and "
                                        f"updating it would lose local files ({err})")
        updated.append(co.path)
    try:
        repo.transaction().update(ref, new, old).commit()
    except RefConflict as exc:
        undo_problem = _undo(repo, updated, old, new)
        now = repo.read_ref(ref)
        msg = f"{ref} moved to {short(now)} while it was being updated (expected {short(old)})"
        if undo_problem:
            msg += f"; {undo_problem}"
        return MoveOutcome("moved", f"{msg} ({exc})" if not now else msg)
    return MoveOutcome("ok", None, updated)


def _undo(repo: Repo, updated: list[Path], old: str, new: str) -> str | None:
    """Put checkouts updated to ``new`` back to ``old`` (after a lost race)."""
    problems = []
    for path in updated:
        err = _read_tree(repo, path, new, old)
        if err is not None:
            problems.append(f"the checkout at {path} holds the tree of {short(new)}: run "
                            f"`git -C {path} read-tree -m -u {new} {old}` ({err})")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------- ledger events


def land_events(repo: Repo, run: str) -> list[LandEvent]:
    """The run's recorded landings, oldest first."""
    out = []
    for e in query.read_ledger(repo, run).run_events(LAND_EVENT):
        landed = e.trailers.get("Uet-Landed")
        previous = e.trailers.get("Uet-Previous")
        if landed and previous and e.subject == LAND_EVENT:
            out.append(LandEvent(e.oid, e.trailers.get("Uet-Branch", ""), landed, previous))
    return out


def record_landing(ledger: Ledger, target: str, previous: str, landed: str, body: str) -> str:
    return ledger.event(LAND_EVENT, body, trailers={
        "Uet-Branch": branch_name(target),
        "Uet-Landed": landed,
        "Uet-Previous": previous,
    })


def rolled_back(ledger: Ledger) -> list[str]:
    return sorted(ws for ws, rec in ledger.states().items() if rec.state == "rolled-back")


# --------------------------------------------------------------------------- land


def land(repo: Repo, ledger: Ledger, *, rebase: bool = False,
         options: RunOptions | None = None) -> LandResult:
    """Fast-forward the run's target branch to its integration tip (see the module doc)."""
    run = ledger.run
    target = ledger.target
    if not target:
        raise UetError(f"run {run} has no target branch; nothing to land")
    ref = branch_ref(target)
    name = branch_name(target)
    tip = ledger.integration_tip()
    iref = integration_ref(run)
    if rolled_back(ledger):
        return LandResult(False, f"run {run} was rolled back; nothing landed (start a new run "
                                 "with `uet run` to land its work again)", repo.read_ref(ref))
    old = repo.read_ref(ref)
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
        if rebase:
            return _rebase_and_land(repo, ledger, old, options)
        return LandResult(False, f"{name} moved to {short(old)} since run {run} started; "
                                 f"nothing landed, {iref} is kept: run `uet land {run} --rebase` "
                                 "to re-integrate onto the new tip and re-verify", old)
    outcome = move_branch(repo, ref, old, tip)
    if outcome.kind == "dirty":
        return LandResult(False, f"{outcome.problem}; nothing landed, {iref} is kept: commit or "
                                 f"stash your changes, then run `uet land {run}`", old)
    if outcome.kind != "ok":
        now = repo.read_ref(ref)
        return LandResult(False, f"{outcome.problem}; nothing landed, {iref} is kept: run "
                                 f"`uet land {run}` again (with --rebase if {name} moved on)", now)
    count = _count(repo, old, tip)
    where = f" and updated the checkout at {', '.join(map(str, outcome.updated))}" \
        if outcome.updated else ""
    body = f"{name}: {short(old)} -> {short(tip)} ({count} commit{'s' * (count != 1)}){where}"
    record_landing(ledger, target, old, tip, body)
    return LandResult(True, f"landed run {run} on {name}: {short(old)} -> {short(tip)} "
                            f"({count} commit{'s' * (count != 1)}){where}", tip)


def _count(repo: Repo, old: str, new: str) -> int:
    out = repo.git_out("rev-list", "--count", f"{old}..{new}")
    return int(out or 0)


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


def _rebase_and_land(repo: Repo, ledger: Ledger, old: str, options: RunOptions | None
                     ) -> LandResult:
    from uet_git.engine.options import RunOptions
    from uet_git.engine.resume import rebase_run

    run = ledger.run
    before = {ws for ws, rec in ledger.states().items() if rec.state == "committed"}
    result = rebase_run(repo, ledger, old, options or RunOptions())
    after = ledger.states()
    lost = sorted(ws for ws in before if after.get(ws) is None
                  or after[ws].state != "committed")
    if lost:
        iref = integration_ref(run)
        return LandResult(False, f"after re-integrating onto {short(old)}, "
                                 f"{', '.join(lost)} did not verify; nothing landed, {iref} holds "
                                 f"the rest: see `uet status {run}`, then `uet retry` or "
                                 f"`uet land {run}`", repo.read_ref(branch_ref(ledger.target)))
    if result.exit_code not in (0, 1):
        return LandResult(False, f"re-integrating onto {short(old)} did not finish "
                                 f"({result.message or f'exit {result.exit_code}'}); nothing "
                                 f"landed: run `uet land {run} --rebase` again",
                          repo.read_ref(branch_ref(ledger.target)))
    landed = land(repo, ledger, rebase=False, options=options)
    if result.message:
        landed.message = f"{result.message}; {landed.message}"
    return landed
