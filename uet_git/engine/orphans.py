"""Worktrees holding work the ledger does not know (uet failed on a workstream, or a run was
killed): snapshotted into the ledger as a ``run: orphan`` event before the worktree is reused,
so a worktree never holds the only copy of anything."""

from __future__ import annotations

from typing import Any

from uet_git.engine.context import RunContext
from uet_git.gitrepo.merge import diff_bytes
from uet_git.gitrepo.odb import tree_of
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.workers.pool import Worktree, snapshot_orphan
from uet_git.workers.sandbox import recover_objects


def preserve_worktree(ctx: RunContext, wt: Worktree, label: str, rec: Any, why: str
                      ) -> str | None:
    """Snapshot a worktree holding work the ledger does not know into the ledger (a
    ``run: orphan`` event: the snapshot commit in its trailers, the binary diff against the
    worktree's base as evidence) before the worktree is reused. Returns the snapshot commit,
    or None when it held nothing new (or exactly a patch the ledger already has)."""
    # A sandboxed tool writes its objects into a private store that uet imports when the tool
    # ends; killed in between, they are only there: import them before snapshotting what
    # refers to them (the worktree's index, the tool's commits).
    recover_objects(ctx.repo, wt.path)
    snap = snapshot_orphan(ctx.repo, wt, f"uet: orphaned worktree of {label}")
    if snap is None:
        return None
    tree = tree_of(ctx.repo, snap)
    for oid in (getattr(rec, "patch", None), getattr(rec, "candidate", None)):
        if oid and tree_of(ctx.repo, oid) == tree:
            return None  # a worker had reset it to the recorded patch: nothing unknown
    base = wt.base
    diff = diff_bytes(ctx.repo, base, snap) if base else b""
    ctx.ledger.event(
        "run: orphan",
        f"worktree {wt.path} (slot {wt.slot}) held changes of {label} that the ledger did not "
        f"record ({why}); snapshot {snap[:12]} (tree {tree[:12]}) kept as evidence",
        trailers={"Uet-Orphan": label, "Uet-Snapshot": snap, "Uet-Snapshot-Tree": tree,
                  **({"Uet-Snapshot-Base": base} if base else {})},
        evidence={f"orphan-{label.replace('/', '-')}-{snap[:12]}.diff": diff},
    )
    ctx.observer.message(f"recorded the orphaned worktree of {label} as {snap[:12]}")
    return snap


def record_orphans(ctx: RunContext) -> list[str]:
    """Snapshot this run's orphaned worktrees into the ledger, then hand them back to the pool.
    Returns the snapshot commits recorded."""
    recorded = []
    prefix = f"{ctx.run_id}/"
    states = ctx.ledger.states()
    for wt in ctx.pool.orphans():
        label = wt.label or ""
        if not label.startswith(prefix):
            if _finished(ctx.repo, label.split("/")[0]):
                # Kept by --keep-worktrees after a run that recorded every result: reusable.
                ctx.pool.release(wt)
            continue  # else another run's, interrupted: its own resume records it
        parts = label[len(prefix):].split("/")
        ws = parts[0] if parts else "?"
        snap = preserve_worktree(ctx, wt, label, states.get(ws), "the interrupted run")
        if snap is not None:
            recorded.append(snap)
        ctx.pool.release(wt)
    return recorded


def _finished(repo: Repo, run: str) -> bool:
    try:
        return query.read_ledger(repo, run).finished
    except Exception:  # not a run id, or no ledger: leave that worktree alone
        return False
