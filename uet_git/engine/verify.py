"""THE integrate-and-verify path: a patch onto a tip (``make_candidate``), then the checks on
the candidate (``verify_candidate``). The integrator, the verification queue
(``engine/queue.py``), re-integration (``uet land --rebase``) and ``uet retry --reapply``
(through the integrator or the queue) all judge candidates here and nowhere else. With a
verdict cache (``Bench.cache``, the queue's) a part of the checks that already passed on the
candidate's tree in this run is not run again.

The checks never come from the patch: ``Checks`` holds the run's configuration (what its base
commit holds, see ``hooks.premerge.config_at``) and the base's pre-merge hooks, which are
written out of the object database into the candidate's log directory and run from there with
the candidate's worktree as working directory; the candidate's own copy of a hook never runs.

On a candidate: the workstream's acceptance commands run again when the candidate's tree is
not the one they passed on (``[verify] rerun_on_candidate``), or always when forced (a patch
re-applied by ``uet retry --reapply``); the pre-merge hooks run on every candidate. The result
is a ``Verdict``; recording it in the ledger is the caller's job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from uet_git.engine.events import Observer
from uet_git.engine.guard import TamperGuard
from uet_git.engine.pipeline import LOG_LIMIT, run_commands
from uet_git.engine.verdicts import VerdictCache, acceptance_key, hooks_key
from uet_git.gitrepo import merge, odb
from uet_git.gitrepo.merge import RebaseResult
from uet_git.gitrepo.objects import make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import patch_changes
from uet_git.hooks.premerge import Hook, collect_hooks, hook_command, write_hooks
from uet_git.spec.models import Config, Workstream
from uet_git.spec.scope import matches
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import ProcResult, read_tail, run_process
from uet_git.workers.sandbox import SandboxPlan, sandbox_for
from uet_git.workers.tools import tool_env, worker_port
from uet_git.workers.validate import CHECKS_PATHS

INTEGRATOR = -1  # the integrator's number for the observer
MAY_CHANGE_CHECKS = "Uet-May-Change-Checks"


@dataclass(frozen=True)
class Checks:
    """What judges every candidate of a run: its configuration and its base's hooks."""

    base: str
    config: Config
    hooks: tuple[Hook, ...]


def checks_at(repo: Repo, base: str, config: Config) -> Checks:
    """The checks of a run whose base is ``base`` and whose configuration is ``config``."""
    return Checks(base, config, tuple(collect_hooks(repo, config, base)))


def make_candidate(repo: Repo, patch: str, tip: str) -> RebaseResult:
    """The patch's change (against its first parent) applied onto ``tip``: the patch itself
    when its parent is ``tip``; ``conflicts`` when it does not apply; ``already_applied`` when
    ``tip`` holds the change already."""
    return merge.rebase(repo, patch, tip)


def empty_candidate(repo: Repo, patch: str, tip: str) -> str:
    """A candidate that changes nothing on ``tip`` (its change is already there), carrying the
    patch's message and author like any candidate."""
    info = odb.get_commit(repo, patch, what=f"patch {patch[:12]}")
    return make_commit(repo, odb.tree_of(repo, tip), [tip], info.message, author=info.author)


class Outcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class Verdict:
    outcome: Outcome
    reason: str | None = None  # verify-failed | hook-failed | tampered when FAILED
    detail: str = ""  # one line: what passed, or what failed and how
    evidence: dict[str, bytes] = field(default_factory=dict)
    trailers: dict[str, str] = field(default_factory=dict)  # for the `verified` transition


@dataclass(frozen=True)
class Candidate:
    """One candidate to judge. ``verified``: the commit whose tree the workstream's acceptance
    already passed on (the patch; before a re-integration, the old candidate)."""

    ws: Workstream
    attempt: int
    patch: str
    candidate: str
    tip: str  # the commit the candidate was made on
    verified: str


@dataclass
class Bench:
    """Where candidates are judged: the run, its worktree pool, who watches, what cancels, and
    the run's check for commands that change the repository outside their worktree."""

    run: str
    target: str | None
    pool: WorktreePool
    observer: Observer
    cancel: threading.Event | None = None
    guard: TamperGuard | None = None
    # The verification queue runs several benches at once: each its own worker number (for
    # the observer: INTEGRATOR, INTEGRATOR - 1, ...) and port block (``slot``; None = the
    # integrator's, the pool's last).
    shown: int = INTEGRATOR
    slot: int | None = None
    # Passes of this run (the queue's; None: no cache, every candidate judged as it comes).
    cache: VerdictCache | None = None
    # The name the tamper guard knows this judging by (default: the workstream). The queue's
    # judgings of one workstream may overlap (a discarded candidate's, being stopped, and the
    # new one's): each needs its own entry, or the first to end closes the other's interval.
    guard_as: str | None = None
    # Where the checks run when not here: an object with ``verify(repo, cand, checks, bench,
    # *, log_dir, label, force) -> Verdict`` (the run's Dask executor, ``engine/executor.py``);
    # None: in a worktree of ``pool``.
    remote: Any = None


def candidate_env(config: Config, ws: Workstream, *, run: str, attempt: int, worktree: Path,
                  slot: int, target: str | None, candidate: str, patch: str,
                  tip: str) -> dict[str, str]:
    """What acceptance commands and hooks get on a candidate: the tool environment of worker
    ``slot`` (the integrator's: the pool's last), ``UET_TARGET``, ``UET_CANDIDATE``,
    ``UET_PATCH`` and ``UET_BASE`` (the tip the candidate was made on)."""
    env = tool_env(ws, run=run, attempt=attempt, worktree=worktree, worker=slot,
                   port=worker_port(config, slot))
    if target:
        env["UET_TARGET"] = target
    env.update({"UET_CANDIDATE": candidate, "UET_PATCH": patch, "UET_BASE": tip})
    return env


def changes_checks(repo: Repo, config: Config, old: str, new: str) -> list[str]:
    """The paths between ``old`` and ``new`` that judge patches (``uet.toml``, ``.uet/**``, the
    ``[verify] protected`` globs: what validation quarantines without ``may_change_checks``)."""
    patterns = [*CHECKS_PATHS, *config.verify.protected]
    out: list[str] = []
    for c in patch_changes(repo, old, new):  # follows the change, not the tree's size
        for p in (c.old_path, c.path):
            if p and p not in out and any(matches(pat, p) for pat in patterns):
                out.append(p)
    return out


@dataclass
class Due:
    """What judging a candidate has to run, and what is said about the rest (``checks_due``;
    used once: judging it adds its notes)."""

    tree: str
    same_tree: bool
    rerun: bool
    hooks: bool
    notes: list[str]
    trailers: dict[str, str]


def checks_due(repo: Repo, cand: Candidate, checks: Checks, cache: VerdictCache | None, *,
               force: bool = False) -> Due:
    """What judging ``cand`` has to run: for a caller that asks ``quick_verdict`` first and
    then, when something has to run, ``verify_candidate`` with the same ``due`` (the trees,
    the cache and the changed checks looked at once)."""
    ws, config = cand.ws, checks.config
    tree = odb.tree_of(repo, cand.candidate)
    same_tree = tree == odb.tree_of(repo, cand.verified)
    rerun = bool(ws.acceptance) and (force or (not same_tree
                                               and config.verify.rerun_on_candidate))
    trailers: dict[str, str] = {}
    notes: list[str] = []
    acc_key, hk = acceptance_key(ws), hooks_key(checks.base, checks.hooks)
    if cache is not None and rerun and not force and cache.passed("acceptance", tree, acc_key):
        rerun = False
        notes.append(f"acceptance already passed on tree {tree[:12]} in this run")
    hooks_due = bool(checks.hooks)
    if cache is not None and hooks_due and cache.passed("hooks", tree, hk):
        hooks_due = False
        notes.append(f"pre-merge hooks already passed on tree {tree[:12]} in this run")
    if ws.may_change_checks:
        touched = changes_checks(repo, config, cand.tip, cand.candidate)
        if touched:
            trailers[MAY_CHANGE_CHECKS] = "true"
            notes.append(f"changes checks ({', '.join(touched[:5])}"
                         f"{' ...' if len(touched) > 5 else ''}; may_change_checks), judged by "
                         f"the base's")
    return Due(tree, same_tree, rerun, hooks_due, notes, trailers)


def quick_verdict(repo: Repo, cand: Candidate, checks: Checks, cache: VerdictCache | None, *,
                  force: bool = False, due: Due | None = None) -> Verdict | None:
    """The verdict on ``cand`` when judging it runs nothing (no acceptance due, no hooks, or
    the cache answers for both): then no worktree and no thread are needed. None: something
    has to run (``verify_candidate``). ``due``: ``checks_due``'s answer, when already asked."""
    if due is None:
        due = checks_due(repo, cand, checks, cache, force=force)
    return _quick(cand, due, cache)


def _quick(cand: Candidate, due: Due, cache: VerdictCache | None) -> Verdict | None:
    if due.rerun or due.hooks:
        return None
    ws, notes = cand.ws, due.notes
    if cache is not None and due.same_tree and ws.acceptance:
        cache.add("acceptance", due.tree, acceptance_key(ws))
    if cache is not None and not due.same_tree and notes:
        pass  # the cache answered, said above
    elif due.same_tree:
        notes.append("the candidate's tree is the verified patch tree; no pre-merge hooks")
    elif not ws.acceptance:
        notes.append("no acceptance commands and no pre-merge hooks to run on the candidate")
    else:
        notes.append("acceptance not re-run on the candidate ([verify] "
                     "rerun_on_candidate = false); no pre-merge hooks")
    return Verdict(Outcome.OK, detail="; ".join(notes), trailers=due.trailers)


def verify_candidate(repo: Repo, cand: Candidate, checks: Checks, bench: Bench, *,
                     log_dir: Path, label: str, force: bool = False,
                     due: Due | None = None) -> Verdict:
    """Acceptance (when the candidate's tree is not the verified one, or ``force``) and the
    base's pre-merge hooks on ``cand`` in a worktree from the pool. With ``bench.cache``, a
    part that already passed on this tree in this run does not run again (unless ``force``
    for acceptance), and what passes is added. ``due``: ``checks_due``'s answer for ``cand``
    with ``bench.cache`` and ``force``, when the caller asked already."""
    ws = cand.ws
    cache = bench.cache
    if due is None:
        due = checks_due(repo, cand, checks, cache, force=force)
    quick = _quick(cand, due, cache)
    if quick is not None:
        return quick
    if bench.remote is not None:
        return bench.remote.verify(repo, cand, checks, bench, log_dir=log_dir, label=label,
                                   force=force)
    tree, same_tree, rerun, hooks_due = due.tree, due.same_tree, due.rerun, due.hooks
    notes, trailers = due.notes, due.trailers
    acc_key, hk = acceptance_key(ws), hooks_key(checks.base, checks.hooks)

    evidence: dict[str, bytes] = {}
    wt = bench.pool.acquire(cand.candidate, label)
    guard_as = bench.guard_as or ws.id
    if bench.guard is not None:
        bench.guard.enter(guard_as, wt.path)
    bench.observer.step_started(ws.id, bench.shown, "verify", attempt=cand.attempt)
    try:
        verdict = _run_checks(repo, cand, checks, bench, wt.path, log_dir=log_dir, rerun=rerun,
                              hooks=hooks_due, evidence=evidence, notes=notes)
    finally:
        tampering = bench.guard.leave(guard_as) if bench.guard is not None else None
        bench.pool.release(wt)
    bench.observer.step_finished(ws.id, bench.shown, "verify", attempt=cand.attempt,
                                 ok=verdict.outcome is Outcome.OK and tampering is None)
    if tampering is not None and verdict.outcome is not Outcome.CANCELLED:
        evidence["tampering.txt"] = tampering.evidence()
        return Verdict(Outcome.FAILED, "tampered", f"on the candidate {cand.candidate[:12]}: "
                       f"{tampering.detail()}", evidence)
    if verdict.outcome is not Outcome.OK:
        return verdict
    if cache is not None:
        if rerun or same_tree:
            cache.add("acceptance", tree, acc_key)
        if hooks_due:
            cache.add("hooks", tree, hk)
    # Something ran on the candidate: say what it contained.
    evidence["candidate.diffstat"] = merge.diff_stat(repo, cand.tip, cand.candidate).encode()
    return Verdict(Outcome.OK, detail="; ".join(notes), evidence=evidence, trailers=trailers)


def _run_checks(repo: Repo, cand: Candidate, checks: Checks, bench: Bench, worktree: Path, *,
                log_dir: Path, rerun: bool, hooks: bool, evidence: dict[str, bytes],
                notes: list[str]) -> Verdict:
    """Acceptance (when ``rerun``), then the hooks, in ``worktree`` (holding the candidate)."""
    ws, config = cand.ws, checks.config
    env = candidate_env(config, ws, run=bench.run, attempt=cand.attempt, worktree=worktree,
                        slot=bench.pool.size - 1 if bench.slot is None else bench.slot,
                        target=bench.target,
                        candidate=cand.candidate, patch=cand.patch, tip=cand.tip)
    # The candidate's code runs (its tests): confined like a tool. The log dir (where the
    # base's hooks are written) is readable, not writable.
    sandbox = sandbox_for(repo, worktree, config.sandbox, extra_readable=[log_dir])
    if rerun:
        bench.observer.worker(bench.shown, ws.id, "acceptance")
        acc = run_commands(ws.acceptance, cwd=worktree, env=env, timeout=ws.timeout,
                           log_dir=log_dir, name="acceptance", cancel=bench.cancel,
                           sandbox=sandbox)
        evidence["candidate-acceptance.log"] = acc.log
        if acc.cancelled:
            return Verdict(Outcome.CANCELLED, evidence=evidence)
        if not acc.ok:
            return Verdict(Outcome.FAILED, "verify-failed",
                           f"acceptance failed on the candidate {cand.candidate[:12]}: "
                           f"{acc.failed}", evidence)
        n = len(ws.acceptance)
        notes.append(f"acceptance: {n} command{'s' * (n != 1)} passed on the candidate "
                     f"in {acc.duration:.1f} s")
    if hooks:
        failed = _run_hooks(repo, cand, checks, bench, env=env, cwd=worktree, log_dir=log_dir,
                            evidence=evidence, sandbox=sandbox)
        if failed is not None:
            return failed
        notes.append(f"pre-merge hooks: {len(checks.hooks)} passed")
    return Verdict(Outcome.OK, evidence=evidence)


def _run_hooks(repo: Repo, cand: Candidate, checks: Checks, bench: Bench, *,
               env: dict[str, str], cwd: Path, log_dir: Path, evidence: dict[str, bytes],
               sandbox: SandboxPlan | None) -> Verdict | None:
    """The hooks one after the other, from the base's copy; the first failure's Verdict, or
    None when all passed."""
    # Written anew for each candidate: a tool that ran since cannot have edited them.
    hook_dir = write_hooks(repo, checks.base, log_dir / "base-hooks")
    log = bytearray()
    for i, hook in enumerate(checks.hooks):
        bench.observer.worker(bench.shown, cand.ws.id, "hooks")
        out, err = log_dir / f"hook-{i}.out", log_dir / f"hook-{i}.err"
        res = run_process(hook_command(hook, hook_dir), cwd=cwd, env=env,
                          timeout=cand.ws.timeout, stdout_path=out, stderr_path=err,
                          cancel=bench.cancel, sandbox=sandbox)
        log += f"$ {hook.name}\n[{_status(res)}]\n".encode()
        log += _section("stdout", read_tail(out, LOG_LIMIT // 2))
        log += _section("stderr", read_tail(err, LOG_LIMIT // 2))
        evidence["hooks.log"] = bytes(log)
        if res.cancelled:
            return Verdict(Outcome.CANCELLED, evidence=evidence)
        if not res.ok:
            return Verdict(Outcome.FAILED, "hook-failed",
                           f"pre-merge hook {hook.name} failed on the candidate "
                           f"{cand.candidate[:12]}: {_status(res)}", evidence)
    return None


# The hook log reads like run_commands' log (a hook is named, not its written-out path).
def _status(res: ProcResult) -> str:
    return res.error or f"exit {res.returncode} in {res.duration:.1f} s"


def _section(title: str, data: bytes) -> bytes:
    if not data:
        return b""
    return f"--- {title} ---\n".encode() + data + (b"" if data.endswith(b"\n") else b"\n")
