"""The integrator: one patch at a time onto the integration tip.

candidate = 3-way merge of the patch onto the tip (in memory, no checkout), committed on top
of the tip with the patch's message and author (so its ``Uet-*`` trailers land with it) ->
``applied``; a conflict -> ``quarantined`` (``conflict``, with the paths). If the candidate's
tree differs from the patch's (the tree the worker verified), the acceptance commands run again
on the candidate; pre-merge hooks run on every candidate -> ``verified`` -> ``committed`` with the
integration ref fast-forwarded in the same ledger transaction. When the patch's parent already
is the tip, the patch itself is the candidate (nothing to merge, nothing to re-verify but the
hooks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pygit2

from uet_git.engine.pipeline import (
    LOG_LIMIT,
    RunContext,
    _section,
    _status,
    run_commands,
)
from uet_git.engine.premerge import collect_hooks, hook_argv
from uet_git.gitrepo.merge import diff_stat, merge_trees
from uet_git.gitrepo.objects import make_commit, to_oid
from uet_git.workers.process import read_tail, run_process


@dataclass
class IntegrationOutcome:
    ws: str
    state: str | None  # "committed", "quarantined", or None (cancelled: nothing more recorded)
    reason: str | None = None
    tip: str = ""
    duration: float = 0.0


def _commit(ctx: RunContext, oid: str) -> pygit2.Commit:
    obj = ctx.repo.pg[to_oid(oid)]
    assert isinstance(obj, pygit2.Commit)
    return obj


def make_candidate(ctx: RunContext, patch: str, tip: str) -> tuple[str | None, list[str]]:
    """``(candidate, [])`` or ``(None, conflicting paths)``."""
    p = _commit(ctx, patch)
    parent = str(p.parents[0].id) if p.parents else None
    if parent == tip:
        return patch, []
    base = parent if parent is not None else None
    result = merge_trees(ctx.repo, base, tip, patch)
    if result.conflicts or result.tree is None:
        return None, sorted(result.conflicts)
    return make_commit(ctx.repo, result.tree, [tip], p.message, author=p.author), []


def integrate(ctx: RunContext, ws_id: str) -> IntegrationOutcome:
    """Take ``ws_id`` from its recorded state (``queued``; ``applied``/``verified`` when a run
    is resumed) to ``committed`` or ``quarantined``."""
    start = time.monotonic()
    rec = ctx.ledger.state(ws_id)
    assert rec is not None and rec.patch is not None and rec.attempt is not None
    attempt, patch, state = rec.attempt, rec.patch, rec.state
    tip = ctx.ledger.integration_tip()
    candidate = rec.candidate

    def done(state: str | None, reason: str | None = None) -> IntegrationOutcome:
        return IntegrationOutcome(ws_id, state, reason, ctx.ledger.integration_tip(),
                                  time.monotonic() - start)

    if state in ("applied", "verified"):
        assert candidate is not None
        parents = [str(p.id) for p in _commit(ctx, candidate).parents]
        if tip not in parents and candidate != tip:
            ctx.record(ws_id, "queued", attempt=attempt,
                       detail=f"the integration tip moved to {tip[:12]} since the candidate "
                              f"{candidate[:12]} was made: re-apply")
            state = "queued"

    if state == "queued":
        ctx.reporter.worker(-1, ws_id, "merge")
        candidate, conflicts = make_candidate(ctx, patch, tip)
        if candidate is None:
            shown = ", ".join(conflicts[:20]) + (" ..." if len(conflicts) > 20 else "")
            ctx.record(ws_id, "quarantined", attempt=attempt, reason="conflict",
                       detail=f"conflicts with the integration tip {tip[:12]} in: {shown}",
                       evidence={"conflicts.txt": ("\n".join(conflicts) + "\n").encode()})
            ctx.reporter.worker(-1, None)
            return done("quarantined", "conflict")
        ctx.record(ws_id, "applied", attempt=attempt, candidate=candidate,
                   detail=f"candidate {candidate[:12]} = {tip[:12]} + patch {patch[:12]}")
        state = "applied"

    assert candidate is not None
    if state == "applied":
        ok = _verify(ctx, ws_id, attempt=attempt, patch=patch, candidate=candidate, tip=tip)
        ctx.reporter.worker(-1, None)
        if ok is None:
            return done(None)
        if not ok:
            return done("quarantined", ctx.ledger.state(ws_id).reason)  # type: ignore[union-attr]
        state = "verified"

    if state == "verified":
        ctx.record(ws_id, "committed", attempt=attempt, integration=candidate,
                   detail=f"integration/{ctx.run_id} fast-forwarded to {candidate[:12]}")
    return done("committed")


def _verify(ctx: RunContext, ws_id: str, *, attempt: int, patch: str, candidate: str,
            tip: str) -> bool | None:
    """Acceptance (when the candidate's tree is not the verified one) and pre-merge hooks on
    the candidate. True -> recorded verified; False -> recorded quarantined; None -> cancelled."""
    ws = ctx.ws(ws_id)
    cand_tree = _commit(ctx, candidate).tree_id
    patch_tree = _commit(ctx, patch).tree_id
    rerun = bool(ws.acceptance) and (
        ws_id in ctx.reverify
        or (cand_tree != patch_tree and ctx.config.verify.rerun_on_candidate))
    hooks = collect_hooks(ctx.repo, ctx.config, candidate)
    evidence: dict[str, bytes] = {}
    notes: list[str] = []
    if rerun or hooks:
        pool = ctx.integrator_pool or ctx.pool
        wt = pool.acquire(candidate, f"{ctx.run_id}/{ws_id}/{attempt}/candidate")
        try:
            env = ctx.env_for(ws, "integrator", wt.path, {
                "UET_CANDIDATE": candidate, "UET_PATCH": patch, "UET_BASE": tip,
            }, attempt=attempt)
            logs = ctx.log_dir(ws_id, attempt, "candidate")
            if rerun:
                ctx.reporter.worker(-1, ws_id, "acceptance")
                acc = run_commands(ws.acceptance, cwd=wt.path, env=env, timeout=ws.timeout,
                                   log_dir=logs, name="acceptance", cancel=ctx.cancel)
                evidence["candidate-acceptance.log"] = acc.log
                if acc.cancelled:
                    return None
                if not acc.ok:
                    ctx.record(ws_id, "quarantined", attempt=attempt, reason="verify-failed",
                               detail=f"acceptance failed on the candidate {candidate[:12]}: "
                                      f"{acc.failed}", evidence=evidence)
                    return False
                notes.append(f"acceptance: {len(ws.acceptance)} commands passed on the "
                             f"candidate in {acc.duration:.1f} s")
            log = bytearray()
            for i, hook in enumerate(hooks):
                ctx.reporter.worker(-1, ws_id, "hooks")
                out, err = logs / f"hook-{i}.out", logs / f"hook-{i}.err"
                res = run_process(hook_argv(hook, wt.path), cwd=wt.path, env=env,
                                  timeout=ws.timeout, stdout_path=out, stderr_path=err,
                                  cancel=ctx.cancel)
                log += f"$ {hook.name}\n[{_status(res)}]\n".encode()
                log += _section("stdout", read_tail(out, LOG_LIMIT // 2))
                log += _section("stderr", read_tail(err, LOG_LIMIT // 2))
                evidence["hooks.log"] = bytes(log)
                if res.cancelled:
                    return None
                if not res.ok:
                    ctx.record(ws_id, "quarantined", attempt=attempt, reason="hook-failed",
                               detail=f"pre-merge hook {hook.name} failed on the candidate "
                                      f"{candidate[:12]}: {_status(res)}", evidence=evidence)
                    return False
            if hooks:
                notes.append(f"pre-merge hooks: {len(hooks)} passed")
        finally:
            pool.release(wt)
    if not notes:
        if cand_tree == patch_tree:
            notes.append("the candidate's tree is the verified patch tree; no pre-merge hooks")
        elif not ws.acceptance:
            notes.append("no acceptance commands and no pre-merge hooks to run on the candidate")
        else:
            notes.append("acceptance not re-run on the candidate ([verify] "
                         "rerun_on_candidate = false); no pre-merge hooks")
    if evidence:  # something ran on the candidate: say what it contained
        evidence["candidate.diffstat"] = diff_stat(ctx.repo, tip, candidate).encode()
    ctx.record(ws_id, "verified", attempt=attempt, detail="; ".join(notes), evidence=evidence)
    return True
