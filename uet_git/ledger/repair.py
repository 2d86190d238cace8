"""Make a run's refs agree with its ledger again (``uet fsck --repair``, and ``Ledger.open``
after a writer was killed in git's commit phase).

The ledger is the truth (``expected.expected_refs``): every ref of the run that disagrees
with it (a state ref left behind or missing, a patch ref moved, an integration ref a tool
forged) is reset in ONE transaction, each with its old value as compare-and-swap, together
with a ``run: repair`` ledger commit that lists the fixes. A fix whose object is gone from the
repository (pruned by a concurrent ``git gc --prune=now``) cannot be made; it is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from uet_git.errors import UetError
from uet_git.gitrepo import RefTransaction, RefUpdater, Repo, objects
from uet_git.gitrepo.odb import MissingObject, has_object, tree_of
from uet_git.gitrepo.trailers import format_message
from uet_git.ledger import layout
from uet_git.ledger.expected import disagreements
from uet_git.ledger.keepalive import Keepalive, Written, commit_keeping
from uet_git.ledger.lock import RunLock, clear_stale_ref_locks
from uet_git.ledger.log import read_ledger
from uet_git.ledger.query import all_run_refs

REPAIR_EVENT = "run: repair"


def repair_refs(repo: Repo, run: str, *, updater: RefUpdater | None = None,
                notes: Sequence[str] = (), keep: Keepalive | None = None) -> list[str]:
    """Holding ``run``'s lock: reset every ref that disagrees with the ledger and record a
    ``run: repair`` commit, in one transaction. Returns one line per fix (``notes`` first,
    e.g. the stale ref locks removed), or ``[]`` when the refs already agree. ``keep``: the
    writer's keepalive, which looks after the repair commit from then on."""
    refs = all_run_refs(repo, run)
    tip = refs.get(layout.ledger_ref(run))
    if tip is None:
        raise UetError(f"no run {run} in this repository (no {layout.ledger_ref(run)})")
    log = read_ledger(repo, run, tip=tip)
    fixes, lost = [], []
    for fix in disagreements(log, refs):
        new = fix[2]
        if new is not None and not has_object(repo, new):
            lost.append(f"{fix[0]}: cannot be restored, object {new[:12]} is missing")
        else:
            fixes.append(fix)
    if not fixes:
        return [*notes, *lost]
    lines = [*notes, *(why for *_, why in fixes), *lost]
    body = "refs made to agree with the ledger:\n" + "\n".join(f"- {ln}" for ln in lines)
    try:
        tree = tree_of(repo, tip)
    except MissingObject:
        raise UetError(f"run {run}: {layout.ledger_ref(run)} names a missing commit "
                       f"{tip[:12]}; the ledger cannot be repaired from itself") from None
    msg = format_message(REPAIR_EVENT, body, [("Uet-Run", run),
                                              ("Uet-Repaired", str(len(fixes)))])
    written = Written(tree, {}, tip, msg, objects.identity(repo, "author"),
                      objects.identity(repo, "committer"))
    commit = written.write(repo)

    def build() -> RefTransaction:
        tx = repo.transaction(updater)
        tx.update(layout.ledger_ref(run), commit, tip)
        for name, old, new, _ in fixes:
            if new is None:
                assert old is not None
                tx.delete(name, old)
            else:
                tx.update(name, new, old)
        return tx

    # A concurrent prune can take the repair commit before the ledger ref names it.
    own = keep is None
    keep = keep or Keepalive(repo, run)
    commit_keeping(keep, build, written, RefTransaction.commit)
    if own:
        keep.ensure(force=True)
    return lines


def repair(repo: Repo, run: str) -> list[str]:
    """``uet fsck --repair RUN``: take the run's lock (``LedgerBusy`` while a writer holds
    it), remove stale ref locks, reset the refs that disagree with the ledger. One line per
    fix; ``[]`` when nothing needed fixing."""
    layout.check_run_id(run)
    lock = RunLock.acquire(repo, run)
    try:
        stale = clear_stale_ref_locks(repo, run)
        notes = ["removed stale ref locks of a killed writer: " + ", ".join(stale)] \
            if stale else []
        return repair_refs(repo, run, notes=notes)
    finally:
        lock.release()
