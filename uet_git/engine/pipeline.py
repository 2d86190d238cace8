"""One workstream through a worker: worktree at the integration tip -> setup -> tool (retries,
circuit breaker) -> normalise -> ``created`` -> validation -> ``validated`` -> acceptance on the
patch -> ``queued``; any failure -> ``quarantined`` with its reason and evidence.

Setup, tool and acceptance run in the run's sandbox (``RunContext.sandbox``), each watched by
the run's ``TamperGuard``: a change to the repository's refs or config outside the worktree
quarantines the workstream ``tampered`` (not retried, not counted by the breaker).

Runs in a worker thread. Every outcome is written to the ledger before the worktree is given
back, so a worktree never holds the only copy of a result. A cancelled attempt (Ctrl-C) records
nothing and keeps its worktree: the next ``uet resume`` snapshots it and runs the attempt again.

The same steps run on a remote worker (``engine/remotejob.py``): there ``ctx`` is a
``StepContext`` whose ``record`` keeps the transitions (and pushes the patch to the run's inbox)
for the coordinator to write to the ledger (``engine/executor.py``), which judges the patch's
validation again itself (``validation``) before it records ``validated``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from uet_git.engine.context import Breaker, RunContext, crash_point
from uet_git.engine.events import Observer
from uet_git.engine.guard import TamperGuard
from uet_git.engine.orphans import preserve_worktree
from uet_git.gitrepo.merge import Change, changed_paths, diff_stat
from uet_git.gitrepo.objects import commit_tree, make_commit
from uet_git.gitrepo.odb import get_commit
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.worktrees import reset_index, reset_worktree
from uet_git.ledger.evidence import MAX_EVIDENCE
from uet_git.ledger.writer import Step
from uet_git.spec.models import Config, VerifyConfig, Workstream
from uet_git.workers.normalise import normalise
from uet_git.workers.pool import Worktree
from uet_git.workers.process import ProcResult, read_tail, run_process
from uet_git.workers.sandbox import SandboxPlan
from uet_git.workers.tools import ResultCheck, build_invocation
from uet_git.workers.validate import validate_changes, validate_tree


class StepPool(Protocol):
    """What the steps use of a worktree pool (``WorktreePool``; ``remotejob.JobPool``)."""

    def acquire(self, base: str, label: str | None = None) -> Worktree: ...

    def reset(self, wt: Worktree, base: str) -> None: ...

    def release(self, wt: Worktree) -> None: ...


class StepContext(Protocol):
    """What the worker steps use of a run: ``RunContext`` locally, ``remotejob.JobContext`` on a
    remote worker (whose ``record`` defers the transitions to the coordinator)."""

    repo: Repo
    config: Config
    pool: StepPool
    observer: Observer
    cancel: threading.Event
    breaker: Breaker
    guard: TamperGuard

    @property
    def run_id(self) -> str: ...

    def ws(self, ws_id: str) -> Workstream: ...

    def sandbox(self, worktree: Path, *writable: Path) -> SandboxPlan | None: ...

    def tail_candidate(self, patch: str) -> str | None: ...

    def accepted_on(self, ws: Workstream, commit: str) -> dict[str, str]: ...

    def env_for(self, ws: Workstream, worker: int | str, worktree: Path,
                extra: Mapping[str, str] | None = None, *, attempt: int = 1,
                prompt_file: Path | None = None) -> dict[str, str]: ...

    def log_dir(self, ws_id: str, attempt: int, what: str = "") -> Path: ...

    def record(self, ws_id: str, to: str, *, attempt: int, reason: str | None = None,
               detail: str = "", shown_reason: str | None = None, **kw: Any) -> str: ...

    def record_steps(self, ws_id: str, steps: Sequence[Step], *, attempt: int,
                     later: bool = False) -> None:
        """``steps`` decided together, in one ledger transaction where there is a ledger
        (``later``: the worker need not wait for it)."""
        ...


LOG_LIMIT = MAX_EVIDENCE - 1024  # bytes of each log kept, room left for read_tail's marker line
BACKOFF_BASE = float(os.environ.get("UET_RETRY_BACKOFF", "0.5"))
BACKOFF_MAX = 30.0


@dataclass
class CommandsResult:
    ok: bool
    log: bytes
    failed: str | None = None  # the command that failed, with why
    cancelled: bool = False
    duration: float = 0.0


def run_commands(commands: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float,
                 log_dir: Path, name: str, cancel: threading.Event | None,
                 sandbox: SandboxPlan | None = None) -> CommandsResult:
    """Run shell commands one after the other (in ``sandbox`` when given), stopping at the
    first failure; a combined log (command, exit status, stdout, stderr) for the evidence."""
    log = bytearray()
    start = time.monotonic()
    for i, cmd in enumerate(commands):
        out, err = log_dir / f"{name}-{i}.out", log_dir / f"{name}-{i}.err"
        res = run_process(cmd, cwd=cwd, env=env, timeout=timeout, stdout_path=out,
                          stderr_path=err, cancel=cancel, sandbox=sandbox)
        status = _status(res)
        log += f"$ {cmd}\n[{status}]\n".encode()
        log += _section("stdout", read_tail(out, LOG_LIMIT // 2))
        log += _section("stderr", read_tail(err, LOG_LIMIT // 2))
        if res.cancelled:
            return CommandsResult(False, bytes(log), cmd, True, time.monotonic() - start)
        if not res.ok:
            return CommandsResult(False, bytes(log), f"{cmd!r}: {status}", False,
                                  time.monotonic() - start)
    return CommandsResult(True, bytes(log), None, False, time.monotonic() - start)


def _status(res: ProcResult) -> str:
    if res.error:
        return res.error
    return f"exit {res.returncode} in {res.duration:.1f} s"


def _section(title: str, data: bytes) -> bytes:
    if not data:
        return b""
    return f"--- {title} ---\n".encode() + data + (b"" if data.endswith(b"\n") else b"\n")


@dataclass
class WorkerOutcome:
    ws: str
    state: str | None  # "queued", "quarantined", or None: cancelled, nothing recorded
    reason: str | None = None
    tool_failed: bool = False  # the tool itself failed (feeds the breaker's bookkeeping)
    duration: float = 0.0


@dataclass
class _Try:
    proc: ProcResult | None
    reason: str | None  # None = the tool succeeded
    detail: str
    evidence: dict[str, bytes]
    output: str = "worktree"
    stdout: bytes = b""


def _run_tool_once(ctx: StepContext, ws: Workstream, wt: Worktree, worker: int, attempt: int,
                   n: int) -> _Try:
    """Setup and tool, sandboxed when the run is, checked for changes to the repository
    outside the worktree (``tampered``: restored, the changes as evidence)."""
    logs = ctx.log_dir(ws.id, attempt, f"try-{n}")
    sandbox = ctx.sandbox(wt.path, logs)
    wt.contained = wt.contained and sandbox is not None
    ctx.guard.enter(ws.id, wt.path)
    try:
        tried = _setup_and_tool(ctx, ws, wt, worker, attempt, logs, sandbox, n)
    finally:
        tampering = ctx.guard.leave(ws.id)
    if tampering is None or tried.reason == "cancelled":
        return tried
    tried.evidence["tampering.txt"] = tampering.evidence()
    return _Try(tried.proc, "tampered", tampering.detail(), tried.evidence)


def _setup_and_tool(ctx: StepContext, ws: Workstream, wt: Worktree, worker: int, attempt: int,
                    logs: Path, sandbox: SandboxPlan | None, n: int = 1) -> _Try:
    prompt_file = logs / "prompt.md"
    prompt_file.write_text(ws.prompt or "")
    # UET_ATTEMPT counts the tries of this attempt (retries included); the ledger's attempt
    # number is UET_LEDGER_ATTEMPT
    env = ctx.env_for(ws, worker, wt.path, {"UET_LEDGER_ATTEMPT": str(attempt)}, attempt=n,
                      prompt_file=prompt_file)
    evidence: dict[str, bytes] = {}
    if ws.setup:
        ctx.observer.worker(worker, ws.id, "setup")
        setup = run_commands(ws.setup, cwd=wt.path, env=env, timeout=ws.timeout, log_dir=logs,
                             name="setup", cancel=ctx.cancel, sandbox=sandbox)
        evidence["setup.log"] = setup.log
        if setup.cancelled:
            return _Try(None, "cancelled", "cancelled", evidence)
        if not setup.ok:
            return _Try(None, "tool-failed", f"setup command failed: {setup.failed}", evidence)
    try:
        inv = build_invocation(ws, ctx.config, worktree=wt.path, prompt_file=prompt_file,
                               log_dir=logs)
    except Exception as exc:  # a bad tool definition is this workstream's failure, not the run's
        return _Try(None, "tool-failed", f"cannot build the tool command: {exc}", evidence)
    env = {**env, **(inv.env or {})}
    out, err = logs / "tool.stdout", logs / "tool.stderr"
    ctx.observer.worker(worker, ws.id, "tool")
    ctx.observer.step_started(ws.id, worker, "tool", attempt=attempt)
    res = run_process(inv.cmd, cwd=wt.path, env=env, timeout=ws.timeout, stdout_path=out,
                      stderr_path=err, stdin_path=inv.stdin_path, cancel=ctx.cancel,
                      sandbox=sandbox)
    ctx.observer.step_finished(ws.id, worker, "tool", attempt=attempt, ok=res.ok,
                               detail=_status(res))
    evidence["tool.stdout"] = read_tail(out, LOG_LIMIT)
    evidence["tool.stderr"] = read_tail(err, LOG_LIMIT)
    cmd_text = inv.cmd if isinstance(inv.cmd, str) else " ".join(map(str, inv.cmd))
    evidence["tool.command"] = f"{cmd_text}\n[{_status(res)}]\n".encode()
    evidence.update({k: read_tail(p, LOG_LIMIT) for k, p in inv.evidence.items() if p.is_file()})
    if res.cancelled or ctx.cancel.is_set():
        return _Try(res, "cancelled", "cancelled", evidence)
    if res.timed_out:
        return _Try(res, "tool-timeout", f"{ws.tool}: {_status(res)}", evidence)
    if not res.ok:
        return _Try(res, "tool-failed", f"{ws.tool}: {_status(res)}", evidence)
    stdout = out.read_bytes() if inv.output != "worktree" else b""
    if inv.result_check is not None:
        problem = _call_check(inv.result_check, out)
        if problem:
            return _Try(res, "tool-failed", f"{ws.tool}: {problem}", evidence)
    return _Try(res, None, f"{ws.tool}: {_status(res)}", evidence, inv.output, stdout)


def _call_check(check: ResultCheck, out: Path) -> str | None:
    """The tool adapter's own check of its stdout (e.g. claude's ``is_error``)."""
    try:
        result = check(out.read_bytes())
    except Exception as exc:
        return f"result check failed: {exc}"
    return result or None


def run_workstream(ctx: RunContext, ws_id: str, *, worker: int, base: str,
                   attempt: int) -> WorkerOutcome:
    """A fresh attempt: tool, normalise, validate, accept. ``base`` is the integration tip the
    worktree starts from."""
    def keep_what_the_tool_did(wt: Worktree, label: str) -> None:
        preserve_worktree(ctx, wt, label, ctx.ledger.state(ws_id), "uet failed on it")

    return run_attempt(ctx, ws_id, worker=worker, base=base, attempt=attempt,
                       on_error=keep_what_the_tool_did)


def run_attempt(ctx: StepContext, ws_id: str, *, worker: int, base: str, attempt: int,
                on_error: Callable[[Worktree, str], None] | None) -> WorkerOutcome:
    """``run_workstream``'s steps for any ``StepContext``. ``on_error(worktree, label)``: when
    uet itself fails, keep what the tool did before the worktree goes back to the pool (None:
    nothing to keep it for, e.g. a remote worker, whose attempt the coordinator runs again)."""
    ws = ctx.ws(ws_id)
    start = time.monotonic()
    label = f"{ctx.run_id}/{ws_id}/{attempt}"
    ctx.observer.worker(worker, ws_id, "checkout")
    wt = ctx.pool.acquire(base, label)
    wt.contained = True  # until a command runs in it unsandboxed (the tool's, acceptance)
    keep = False
    try:
        tries: list[str] = []
        last: _Try | None = None
        for n in range(ws.retries + 1):
            if n:
                delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (n - 1))
                ctx.observer.worker(worker, ws_id, f"retry in {delay:g}s")
                if ctx.cancel.wait(delay):
                    keep = True
                    return WorkerOutcome(ws_id, None, duration=time.monotonic() - start)
                contained = wt.contained  # the pool's own setup, if any, it accounts for
                ctx.pool.reset(wt, base)  # include files and [worktree] setup again
                wt.contained = contained
            last = _run_tool_once(ctx, ws, wt, worker, attempt, n + 1)
            if last.reason == "cancelled":
                keep = True
                return WorkerOutcome(ws_id, None, duration=time.monotonic() - start)
            tries.append(f"try {n + 1}: {last.detail.splitlines()[0]}")
            if last.reason in (None, "tampered"):  # tampering is not retried
                break
            if ctx.breaker.is_open(ws.tool) and n < ws.retries:
                tries.append(f"circuit breaker open for tool {ws.tool}: no more tries")
                break
        assert last is not None
        # The breaker counts workstreams, not tries: retries are the workstream's own business.
        if last.reason is None:
            ctx.breaker.success(ws.tool)
        elif last.reason != "tampered":
            ctx.breaker.failure(ws.tool)
        crash_point(f"{ws_id}:tool-done")
        evidence = dict(last.evidence)
        if len(tries) > 1:
            evidence["tries.txt"] = ("\n".join(tries) + "\n").encode()
        if last.reason is not None:
            tool_failed = last.reason != "tampered"
            detail = last.detail + (f" ({len(tries)} tries)" if ws.retries and tool_failed
                                    else "")
            ctx.record(ws_id, "quarantined", attempt=attempt, reason=last.reason, detail=detail,
                       evidence=evidence)
            return WorkerOutcome(ws_id, "quarantined", last.reason, tool_failed,
                                 time.monotonic() - start)

        ctx.observer.worker(worker, ws_id, "normalise")
        norm = normalise(ctx.repo, wt.path, base, ws=ws, run=ctx.run_id, attempt=attempt,
                         tool=ws.tool, output=last.output, stdout=last.stdout)
        if norm.error:
            ctx.record(ws_id, "quarantined", attempt=attempt, reason="tool-failed",
                       detail=f"cannot take the tool's output: {norm.error}", evidence=evidence)
            return WorkerOutcome(ws_id, "quarantined", "tool-failed", False,
                                 time.monotonic() - start)
        patch = norm.patch
        if patch is None:
            if not ws.allow_empty:
                ctx.record(ws_id, "quarantined", attempt=attempt, reason="empty",
                           detail=f"{ws.tool} changed nothing", evidence=evidence)
                return WorkerOutcome(ws_id, "quarantined", "empty", False,
                                     time.monotonic() - start)
            patch = _empty_patch(ctx, ws, base, attempt)
        if norm.tool_commits:
            evidence["tool-commits.txt"] = ("\n".join(norm.tool_commits) + "\n").encode()
        evidence["diffstat"] = diff_stat(ctx.repo, base, patch).encode()
        created = Step("created", patch=patch, evidence=evidence,
                       summary=f"{ws.tool} produced {len(norm.changes)} changed "
                               f"path{'s' * (len(norm.changes) != 1)}")
        outcome = check_patch(ctx, ws_id, worker=worker, attempt=attempt, patch=patch,
                              changes=norm.changes, wt=wt, state="created", started=start,
                              created=created)
        outcome.duration = time.monotonic() - start
        return outcome
    except Exception:
        if ctx.cancel.is_set():
            # Ctrl-C also reaches our own git commands (same process group): not an error of
            # this workstream. Keep the worktree as it is for `uet resume`.
            keep = True
            raise
        # uet itself failed on this workstream: keep what the tool did before the worktree
        # goes back to the pool (the loop records the internal error).
        try:
            if on_error is not None:
                on_error(wt, label)
        except Exception:
            keep = True  # cannot snapshot it: leave the worktree alone for a resume
        raise
    finally:
        ctx.observer.worker(worker, None)
        if not keep:
            ctx.pool.release(wt)


def _empty_patch(ctx: StepContext, ws: Workstream, base: str, attempt: int) -> str:
    """``allow_empty``: an empty commit carries the workstream through the ledger."""
    msg = (f"{ws.title or ws.id} (no changes)\n\nUet-Workstream: {ws.id}\nUet-Run: {ctx.run_id}\n"
           f"Uet-Tool: {ws.tool}\nUet-Attempt: {attempt}\n")
    return make_commit(ctx.repo, commit_tree(ctx.repo, base), [base], msg)


def validation(repo: Repo, ws: Workstream, verify: VerifyConfig, patch: str,
               changes: list[Change] | None = None) -> tuple[str | None, str]:
    """The patch's checks before anything runs on it: protected paths, scope and size, then
    the tree (``git fsck --strict``'s rules). ``(reason, detail)``; reason None = valid."""
    base = get_commit(repo, patch).parent
    if changes is None:
        changes = changed_paths(repo, base, patch)
    reason, detail = validate_changes(changes, ws, verify)
    if reason is None and base is not None:
        # Before anything runs on it: a tree git fsck --strict rejects never reaches a
        # candidate, let alone the target (a .gitmodules URL that is an option, .git names).
        reason, detail = validate_tree(repo, base, patch)
    if reason is None and not detail:
        detail = (f"{len(changes)} changed path{'s' * (len(changes) != 1)} within scope "
                  "and limits")
    return reason, detail


def check_patch(ctx: StepContext, ws_id: str, *, worker: int, attempt: int, patch: str,
                changes: list[Change] | None, wt: Worktree, state: str,
                started: float | None = None, created: Step | None = None) -> WorkerOutcome:
    """From ``created`` (or ``validated``): validation, then acceptance on exactly the patch's
    tree, then ``queued``. Used by fresh attempts (``created``: that transition, not recorded
    yet) and by resume (a patch recorded before a crash).

    Transitions decided together share one ledger transaction (``ctx.record_steps``): a fresh
    patch's ``created`` and its validation's verdict (validation is in memory, milliseconds),
    and with no acceptance ``queued`` too. The patch's first ref is in that transaction, so
    it is waited for before the worktree (whose HEAD is the patch's only other root) goes
    back. ``queued`` after acceptance is not waited for (``later=True``): the
    patch is recorded already, the worker needs nothing back, and its slot starts the next
    tool while the ledger writes."""
    ws = ctx.ws(ws_id)
    start = time.monotonic()
    steps = [created] if created is not None else []
    if state == "created":
        reason, detail = validation(ctx.repo, ws, ctx.config.verify, patch, changes)
        if reason:
            ctx.record_steps(ws_id, [*steps, Step("quarantined", reason=reason, summary=detail)],
                             attempt=attempt)
            return WorkerOutcome(ws_id, "quarantined", reason, False, time.monotonic() - start)
        steps.append(Step("validated", summary=detail))
    if ws.acceptance:
        if steps:
            ctx.record_steps(ws_id, steps, attempt=attempt)
        ctx.observer.worker(worker, ws_id, "acceptance")
        # With the verification queue, first on the queue's tail + the patch (verify once: the
        # queue's candidate is that tree when nothing ahead changes); failing there is no
        # verdict on the patch, which is then judged alone as without the queue.
        tail = ctx.tail_candidate(patch)
        for target in (tail, patch) if tail else (patch,):
            if tail:
                reset_worktree(ctx.repo, wt.path, target, keep_ignored=True)
            elif wt.base != patch:
                # The worktree holds exactly the patch's files (the snapshot took them from
                # it); point HEAD and the index at the patch too, in one cheap step. Ignored
                # files (a .venv built by setup) stay.
                reset_index(ctx.repo, wt.path, patch)
            env = ctx.env_for(ws, worker, wt.path, {"UET_PATCH": patch}, attempt=attempt)
            logs = ctx.log_dir(ws_id, attempt, "acceptance" if target == patch else "tail")
            ctx.observer.step_started(ws_id, worker, "acceptance", attempt=attempt)
            sandbox = ctx.sandbox(wt.path, logs)
            wt.contained = wt.contained and sandbox is not None
            ctx.guard.enter(ws_id, wt.path)
            try:
                acc = run_commands(ws.acceptance, cwd=wt.path, env=env, timeout=ws.timeout,
                                   log_dir=logs, name="acceptance", cancel=ctx.cancel,
                                   sandbox=sandbox)
            finally:
                tampering = ctx.guard.leave(ws_id)
            ctx.observer.step_finished(ws_id, worker, "acceptance", attempt=attempt, ok=acc.ok)
            if acc.ok or acc.cancelled or tampering is not None:
                break
        if acc.cancelled:
            return WorkerOutcome(ws_id, None, duration=time.monotonic() - start)
        if tampering is not None:
            ctx.record(ws_id, "quarantined", attempt=attempt, reason="tampered",
                       detail=f"acceptance: {tampering.detail()}",
                       evidence={"acceptance.log": acc.log,
                                 "tampering.txt": tampering.evidence()})
            return WorkerOutcome(ws_id, "quarantined", "tampered", False,
                                 time.monotonic() - start)
        if not acc.ok:
            ctx.record(ws_id, "quarantined", attempt=attempt, reason="verify-failed",
                       detail=f"acceptance failed on the patch: {acc.failed}",
                       evidence={"acceptance.log": acc.log})
            return WorkerOutcome(ws_id, "quarantined", "verify-failed", False,
                                 time.monotonic() - start)
        on = "" if target == patch else f" on the queue's tail + the patch ({target[:12]})"
        queued = Step("queued", evidence={"acceptance.log": acc.log},
                      summary=f"acceptance: {len(ws.acceptance)} command"
                              f"{'s' * (len(ws.acceptance) != 1)} passed in "
                              f"{acc.duration:.1f} s{on}",
                      trailers={**_worker_seconds(started or start),
                                **ctx.accepted_on(ws, target)})
        ctx.record_steps(ws_id, [queued], attempt=attempt, later=True)
    else:
        queued = Step("queued", summary="no acceptance commands",
                      trailers=_worker_seconds(started or start))
        ctx.record_steps(ws_id, [*steps, queued], attempt=attempt, later=not steps)
    return WorkerOutcome(ws_id, "queued", duration=time.monotonic() - start)


WORKER_SECONDS = "Uet-Worker-Seconds"


def _worker_seconds(started: float) -> dict[str, str]:
    """How long the worker took (setup, tool, checks): what later runs schedule by. The
    ledger's own times start when the patch exists, after the tool."""
    return {WORKER_SECONDS: f"{time.monotonic() - started:.2f}"}


def recheck_patch(ctx: RunContext, ws_id: str, *, worker: int, attempt: int, patch: str,
                  state: str) -> WorkerOutcome:
    """Resume of a workstream recorded ``created`` or ``validated``: the patch exists, the
    checks after it were not recorded, so they run again on the stored patch."""
    wt = ctx.pool.acquire(patch, f"{ctx.run_id}/{ws_id}/{attempt}")
    try:
        return check_patch(ctx, ws_id, worker=worker, attempt=attempt, patch=patch,
                           changes=None, wt=wt, state=state)
    finally:
        ctx.observer.worker(worker, None)
        ctx.pool.release(wt)
