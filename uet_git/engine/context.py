"""What the worker path and the integrator share during one run: ``RunContext`` (the run's
repository, ledger, config, plan, worktree pool, observer, cancel event and circuit breaker),
the ``Breaker``, and the fault-injection points of the crash tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uet_git.engine.events import Observer
from uet_git.engine.guard import TamperGuard, guard_for
from uet_git.engine.verdicts import ACCEPTED_ON, VerdictCache, acceptance_key
from uet_git.gitrepo.merge import rebase
from uet_git.gitrepo.odb import get_commit, tree_of
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.writer import Ledger, Step
from uet_git.plan.dag import Plan
from uet_git.spec.models import Config, Workstream
from uet_git.workers.pool import WorktreePool
from uet_git.workers.sandbox import SandboxPlan, available, sandbox_for
from uet_git.workers.tools import tool_env, worker_port

WORKER_THREAD = "uet-worker-"  # engine.loop's worker threads' names begin so


def attempt_log_dir(root: Path, ws_id: str, attempt: int, what: str = "") -> Path:
    """``ROOT/WS/ATTEMPT[/WHAT]``, made: where an attempt's command logs go (locally and on a
    remote worker alike)."""
    d = root / ws_id / str(attempt)
    if what:
        d = d / what
    d.mkdir(parents=True, exist_ok=True)
    return d


class Breaker:
    """A circuit breaker per tool: ``threshold`` consecutive workstreams whose tool failed (after
    their retries) open it, and an open breaker stays open for the rest of the run. Shared by
    the worker threads."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._lock = threading.Lock()
        self._fails: dict[str, int] = {}
        self._open: set[str] = set()

    def success(self, tool: str) -> None:
        with self._lock:
            self._fails[tool] = 0

    def failure(self, tool: str) -> bool:
        """Count a failure; True when this one opened the breaker."""
        with self._lock:
            self._fails[tool] = self._fails.get(tool, 0) + 1
            if tool not in self._open and self._fails[tool] >= self.threshold:
                self._open.add(tool)
                return True
            return False

    def is_open(self, tool: str) -> bool:
        with self._lock:
            return tool in self._open


@dataclass
class RunContext:
    """Everything a worker or the integrator needs, shared read-only (plus thread-safe parts:
    the ledger, the pool, the observer, the breaker, the cancel event)."""

    repo: Repo
    ledger: Ledger
    config: Config
    plan: Plan
    pool: WorktreePool
    observer: Observer
    log_root: Path
    target: str | None
    cancel: threading.Event = field(default_factory=threading.Event)
    breaker: Breaker = field(default_factory=lambda: Breaker(3))
    # Patches queued again by `uet retry --reapply`: their acceptance never passed, so it runs
    # on the candidate whatever its tree.
    reverify: set[str] = field(default_factory=set)
    # Whether commands run in bubblewrap ([sandbox] mode = "bwrap" and bwrap works here), and
    # the check for tools that changed the repository outside their worktree.
    sandboxed: bool = field(init=False)
    guard: TamperGuard = field(init=False)
    # The verification queue's tail (the candidate its last patch makes, else the integration
    # tip; set by the loop thread, read by workers) and its verdict cache: a worker judges a
    # new patch on the tail, so that when nothing ahead of it changes, the queue's candidate
    # is that tree and needs no second run. None: no queue ([verify] window = 1).
    queue_tail: str | None = None
    verdicts: VerdictCache | None = None
    # Where attempts run: None = this process's worker threads; else an object with
    # ``run(ctx, ws_id, *, worker, base, attempt, recheck) -> WorkerOutcome`` that runs them
    # elsewhere and records them here (``engine/executor.py``: Dask workers).
    executor: Any = None

    def __post_init__(self) -> None:
        self.sandboxed = self.config.sandbox.mode == "bwrap" and available() is None
        self.guard = guard_for(self.repo, self.config.sandbox, sandboxed=self.sandboxed)

    def sandbox(self, worktree: Path, *writable: Path) -> SandboxPlan | None:
        """The sandbox for commands run in ``worktree`` (also writing ``writable``, e.g. their
        log dir), or None when they run unsandboxed."""
        if not self.sandboxed:
            return None
        return sandbox_for(self.repo, worktree, self.config.sandbox, extra_writable=writable)

    def tail_candidate(self, patch: str) -> str | None:
        """The patch on the queue's tail (a commit made in memory) for its worker acceptance,
        or None: no queue, the tail is the patch's own parent, or it does not apply there."""
        tail = self.queue_tail
        if tail is None or self.verdicts is None:
            return None
        if get_commit(self.repo, patch).parent == tail:
            return None
        made = rebase(self.repo, patch, tail)
        return made.commit if made.commit and not made.conflicts else None

    def accepted_on(self, ws: Workstream, commit: str) -> dict[str, str]:
        """A worker's acceptance passed on ``commit`` (the patch or its tail candidate): into
        the verdict cache, and the trailer that keeps it in the ledger (``verdicts``)."""
        if self.verdicts is None:
            return {}
        self.verdicts.add("acceptance", tree_of(self.repo, commit), acceptance_key(ws))
        return {ACCEPTED_ON: commit}

    @property
    def run_id(self) -> str:
        return self.ledger.run

    def ws(self, ws_id: str) -> Workstream:
        return self.plan.workstreams[ws_id]

    def env_for(self, ws: Workstream, worker: int | str, worktree: Path,
                extra: Mapping[str, str] | None = None, *, attempt: int = 1,
                prompt_file: Path | None = None) -> dict[str, str]:
        """``UET_*`` (run, workstream, worktree, worker, port block, attempt, prompt), then the
        workstream's ``env``, then ``extra``. The integrator is worker number ``jobs``."""
        slot = worker if isinstance(worker, int) else self.pool.size - 1
        env = tool_env(ws, run=self.run_id, attempt=attempt, worktree=worktree, worker=slot,
                       port=worker_port(self.config, slot), prompt_file=prompt_file)
        if self.target:
            env["UET_TARGET"] = self.target
        if extra:
            env.update(extra)
        return env

    def log_dir(self, ws_id: str, attempt: int, what: str = "") -> Path:
        return attempt_log_dir(self.log_root, ws_id, attempt, what)

    def record(self, ws_id: str, to: str, *, attempt: int, reason: str | None = None,
               detail: str = "", shown_reason: str | None = None, **kw: Any) -> str:
        """A ledger transition, then the observer's line (the ledger is the truth: report
        after). ``shown_reason``: the reason to report when the ledger takes none
        (``blocked``)."""
        step = Step(to, reason=reason, summary=detail, **kw)
        return self.record_chain(ws_id, [step], attempt=attempt, shown_reason=shown_reason)[-1]

    def record_chain(self, ws_id: str, steps: Sequence[Step], *, attempt: int,
                     shown_reason: str | None = None) -> list[str]:
        """Consecutive transitions of ``ws_id`` decided together, in ONE ledger transaction
        (``Ledger.record_chain``: one commit each), then the observer's line for each. The
        integrator's and the queue's (any thread but a worker's) go first in a group
        commit: a commit unlocks dependents, a worker's record only frees its own slot."""
        first = not threading.current_thread().name.startswith(WORKER_THREAD)
        oids = self.ledger.record_chain(ws_id, steps, attempt=attempt, first=first)
        self._reported(ws_id, steps, oids, attempt, shown_reason)
        return oids

    def record_steps(self, ws_id: str, steps: Sequence[Step], *, attempt: int,
                     later: bool = False) -> None:
        """The worker steps' way to record: ``record_chain``, or with ``later``
        ``record_later``."""
        if later:
            self.record_later(ws_id, steps, attempt=attempt)
        else:
            self.record_chain(ws_id, steps, attempt=attempt)

    def record_later(self, ws_id: str, steps: Sequence[Step], *, attempt: int) -> None:
        """``record_chain`` without waiting for it (a worker's last transition: the worker
        needs nothing back, so its slot takes the next tool while the ledger writes). The
        observer's line comes once it is durable; ``ledger.state(ws_id)`` waits for it."""
        def done(oids: list[str]) -> None:
            self._reported(ws_id, steps, oids, attempt, None)

        self.ledger.submit(ws_id, steps, attempt=attempt, done=done)

    def _reported(self, ws_id: str, steps: Sequence[Step], oids: list[str], attempt: int,
                  shown_reason: str | None) -> None:
        # The state it left, from the commit just written (its Uet-From trailer), not from
        # ledger.state() before: that takes the writer's mutex a second time per transition,
        # and under contention waits out another thread's whole ref transaction (fsync).
        prev = recorded_from(self.repo, oids[0])
        for step in steps:
            self.observer.transition(ws_id, prev, step.to, attempt=attempt,
                                     reason=step.reason or shown_reason,
                                     detail=first_line(step.summary))
            crash_point(f"{ws_id}:{step.to}")
            prev = step.to


def recorded_from(repo: Repo, ledger_commit: str) -> str | None:
    """The ``Uet-From`` state of a transition's ledger commit (None: it entered the ledger)."""
    value = parse_trailers(get_commit(repo, ledger_commit).message).get("Uet-From")
    return None if value in (None, "none") else value


def crash_point(point: str) -> None:
    """Fault injection for the crash tests: ``UET_TEST_CRASH_AT=POINT[,POINT...]`` makes the
    process ``os._exit(137)`` when it reaches POINT (``WS:STATE`` right after a transition was
    recorded, ``WS:tool-done`` after a tool exited, ``land`` before landing)."""
    spec = os.environ.get("UET_TEST_CRASH_AT")
    if spec and point in spec.split(","):
        os._exit(137)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
