"""The job a Dask worker runs for one attempt of one workstream (``run_job``), and the worker
plugin that kills the tools of a worker that died.

Plain data in (``JobSpec``) and out (``JobResult``): the worker never sees the coordinator's
repository, only a git URL. Per worker machine, under a cache directory (``[executor] cache``,
else ``UET_WORKER_CACHE``, else ``~/.cache/uet``):

- ``mirrors/KEY.git``: a bare mirror of the repository, created once and fetched into (never
  re-cloned), under ``mirrors/KEY.lock`` while it is written, so two jobs on one machine never
  fetch into it at once; the job fetches its exact base commit by id.
- ``worktrees/KEY/N``: the worktree pool (``workers/pool.py``) over the mirror, shared by the
  worker processes of the machine through its slot locks.

The attempt then runs through the very steps of a local one (``pipeline.run_attempt``: setup,
tool, sandbox, tamper guard, normalise, validation, acceptance), with a ``JobContext`` whose
``record`` keeps each transition for the coordinator to write. When the patch exists (its
``created`` transition) it is pushed to ``refs/uet/inbox/RUN/WS/N``, create-only: the ref of
an attempt never moves. If that ref exists already (Dask re-ran the job after the first one
pushed and then died, or a resumed coordinator asked again) the job takes THAT patch and only
checks it (validation, acceptance): an attempt has one patch, whoever made it.

Cancel and timeout of the coordinator reach the tool through a ``distributed.Event`` named in
the spec (Dask's own cancel does not stop a running task): the attempt runs in a thread of its
own while the task's thread, the only one Dask lets wait on the event, polls it and sets the
cancel event ``run_process`` watches. Every tool carries ``UET_DASK_OWNER=PID:START`` (its
worker process); the plugin (``sweep_plugin``) kills, when a worker (re)starts, every tool
whose owner is gone.

Versions: a spec carries the coordinator's uet version and the job protocol (``PROTOCOL``,
the shape of the specs and results); a worker that runs another of either fails the job at
once with one line naming both (``check_versions``), before it touches anything: the job's
config and workstream are data whose meaning is the version's.

Timings: the job's steps (``tool``, ``acceptance``, as a local run reports them to its
observer) are kept by a ``StepClock`` as offsets from the job's start and returned with the
result, for the coordinator to record (``engine/remotesteps.py``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import filelock

from uet_git import __version__
from uet_git.engine.context import Breaker, attempt_log_dir
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.guard import TamperGuard, guard_for
from uet_git.engine.pipeline import WorkerOutcome, check_patch, run_attempt
from uet_git.gitrepo.mirror import fetch_commits, open_mirror, push_new_ref, remote_refs
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.layout import inbox_ref
from uet_git.ledger.writer import Step
from uet_git.spec.models import Config, Workstream
from uet_git.workers.pool import Worktree, WorktreePool
from uet_git.workers.procfs import all_procs, kill_pids, read_stat
from uet_git.workers.sandbox import SandboxPlan, available, sandbox_for
from uet_git.workers.tools import PRESETS, prepare_repo_for_tools, tool_env, worker_port

OWNER_VAR = "UET_DASK_OWNER"
# The shape of JobSpec/JobResult (and of the candidate checks' specs, engine/remoteverify.py):
# bumped whenever a field changes meaning, so an older worker refuses a newer coordinator.
PROTOCOL = 2
CACHE_ENV = "UET_WORKER_CACHE"
CANCEL_POLL = 0.2  # seconds between two looks at the job's cancel event


@dataclass(frozen=True)
class JobSpec:
    """One attempt, as the coordinator submits it (plain data: it crosses the network)."""

    run: str
    ws: dict[str, Any]  # Workstream.model_dump(by_alias=True)
    config: dict[str, Any]  # Config.model_dump(by_alias=True)
    base: str
    attempt: int
    url: str  # where the worker fetches the base and pushes its inbox ref
    repo_key: str  # names the mirror on worker machines
    cancel_event: str = ""  # a distributed.Event name; "" = not polled (a direct call)
    token: str | None = None  # bearer token of `uet serve`
    target: str | None = None
    reuse: str | None = None  # the attempt's inbox patch already exists: check it only
    cache: str | None = None
    uet_version: str = __version__  # the coordinator's (check_versions)
    protocol: int = PROTOCOL


@dataclass
class JobResult:
    """What the coordinator records: the transitions, in order, and where the job ran."""

    records: list[dict[str, Any]]
    state: str | None  # like WorkerOutcome.state; None = cancelled
    reason: str | None
    tool_failed: bool
    duration: float
    breaker: str | None  # "success" / "failure": what the tool's breaker saw
    patch: str | None  # the inbox ref's commit, if one was pushed or reused
    host: str
    worker: str
    reused: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)  # StepClock.steps


class VersionMismatch(RuntimeError):
    """The job was made by a coordinator of another uet version or job protocol."""


def check_versions(spec: object) -> None:
    """Raise ``VersionMismatch`` (one line naming both sides) unless ``spec`` was made by a
    coordinator of this uet version and job protocol. Read from the instance's own fields: a
    spec pickled by another version keeps its fields, whatever this version's class says."""
    given = getattr(spec, "__dict__", {})
    version, protocol = given.get("uet_version"), given.get("protocol")
    if version != __version__ or protocol != PROTOCOL:
        raise VersionMismatch(
            f"the Dask worker runs uet {__version__} (job protocol {PROTOCOL}), the coordinator "
            f"uet {version or 'unknown'} (job protocol {protocol or 'unknown'}): install the "
            "same uet on the coordinator and every worker")


def worker_version() -> tuple[str, int]:
    """(uet version, job protocol) of this process: what ``executor.connect`` asks each
    worker before the run's first job."""
    return __version__, PROTOCOL


def version_problem(versions: Mapping[str, Any]) -> str | None:
    """One line about the first worker (address -> ``worker_version()``) whose uet version or
    job protocol is not this process's, or None when they all agree."""
    for address, got in sorted(versions.items()):
        if tuple(got) != (__version__, PROTOCOL):
            version, protocol = [*got, "unknown", "unknown"][:2]
            return (f"the Dask worker {address} runs uet {version} (job protocol {protocol}), "
                    f"the coordinator uet {__version__} (job protocol {PROTOCOL}): install the "
                    "same uet on the coordinator and every worker")
    return None


class StepClock(NullObserver):
    """The job's observer: keeps each step's span as offsets (s) from the job's start."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.steps: list[dict[str, Any]] = []
        self._open: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def step_started(self, ws: str, worker: int, step: str, *, attempt: int = 1) -> None:
        with self._lock:
            rec = {"step": step, "start": round(time.monotonic() - self.started, 3),
                   "end": None, "ok": None}
            self.steps.append(rec)
            self._open[(ws, worker, step)] = rec

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        with self._lock:
            rec = self._open.pop((ws, worker, step), None)
            if rec is not None:
                rec.update(end=round(time.monotonic() - self.started, 3), ok=ok)


class InboxTaken(Exception):
    """The attempt's inbox ref exists (another run of this job pushed first)."""

    def __init__(self, oid: str) -> None:
        super().__init__(oid)
        self.oid = oid


class _SeenBreaker(Breaker):
    """A job's own breaker: it only notes what the coordinator's breaker must count."""

    def __init__(self) -> None:
        super().__init__(threshold=1 << 30)
        self.seen: str | None = None

    def success(self, tool: str) -> None:
        self.seen = "success"

    def failure(self, tool: str) -> bool:
        self.seen = "failure"
        return False


@dataclass
class JobContext:
    """A ``pipeline.StepContext`` on a worker machine: the mirror, the machine's pool, the
    run's config, and a ``record`` that keeps the transitions for the coordinator."""

    repo: Repo
    config: Config
    pool: JobPool
    spec: JobSpec
    workstream: Workstream
    log_root: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    observer: Observer = field(default_factory=NullObserver)
    breaker: _SeenBreaker = field(default_factory=_SeenBreaker)
    records: list[dict[str, Any]] = field(default_factory=list)
    pushed: str | None = None
    sandboxed: bool = field(init=False)
    guard: TamperGuard = field(init=False)

    def __post_init__(self) -> None:
        self.sandboxed = self.config.sandbox.mode == "bwrap" and available() is None
        self.guard = guard_for(self.repo, self.config.sandbox, sandboxed=self.sandboxed)

    @property
    def run_id(self) -> str:
        return self.spec.run

    def ws(self, ws_id: str) -> Workstream:
        return self.workstream

    def sandbox(self, worktree: Path, *writable: Path) -> SandboxPlan | None:
        if not self.sandboxed:
            return None
        return sandbox_for(self.repo, worktree, self.config.sandbox, extra_writable=writable)

    def tail_candidate(self, patch: str) -> str | None:
        return None  # the verification queue's tail lives with the coordinator

    def accepted_on(self, ws: Workstream, commit: str) -> dict[str, str]:
        return {}  # the coordinator notes it in its verdict cache when it records `queued`

    def env_for(self, ws: Workstream, worker: int | str, worktree: Path,
                extra: Mapping[str, str] | None = None, *, attempt: int = 1,
                prompt_file: Path | None = None) -> dict[str, str]:
        # The port block is the pool slot's: jobs of one machine never share one.
        slot = int(worktree.name) if worktree.name.isdigit() else 0
        env = tool_env(ws, run=self.run_id, attempt=attempt, worktree=worktree, worker=slot,
                       port=worker_port(self.config, slot), prompt_file=prompt_file)
        env[OWNER_VAR] = owner_marker()
        if self.spec.target:
            env["UET_TARGET"] = self.spec.target
        if extra:
            env.update(extra)
        return env

    def log_dir(self, ws_id: str, attempt: int, what: str = "") -> Path:
        return attempt_log_dir(self.log_root, ws_id, attempt, what)

    def record(self, ws_id: str, to: str, *, attempt: int, reason: str | None = None,
               detail: str = "", shown_reason: str | None = None, **kw: Any) -> str:
        if to == "created" and kw.get("patch"):
            self._push(str(kw["patch"]), attempt)
        self.records.append({"to": to, "attempt": attempt, "reason": reason, "detail": detail,
                             "shown_reason": shown_reason, "kw": kw})
        return ""

    def record_steps(self, ws_id: str, steps: Sequence[Step], *, attempt: int,
                     later: bool = False) -> None:
        """One by one: the coordinator records them (this only keeps them for it)."""
        for step in steps:
            kw = {k: v for k, v in (("patch", step.patch), ("candidate", step.candidate),
                                    ("evidence", step.evidence),
                                    ("integration", step.integration),
                                    ("trailers", step.trailers)) if v is not None}
            self.record(ws_id, step.to, attempt=attempt, reason=step.reason,
                        detail=step.summary, **kw)

    def _push(self, patch: str, attempt: int) -> None:
        """The patch into the run's inbox before anything else is said about it."""
        ref = inbox_ref(self.run_id, self.workstream.id, attempt)
        if push_new_ref(self.repo, self.spec.url, patch, ref, token=self.spec.token):
            self.pushed = patch
            return
        theirs = remote_refs(self.repo, self.spec.url, ref, token=self.spec.token).get(ref)
        if theirs is None:  # deleted between the push and the look: someone pruned it
            raise RuntimeError(f"{ref}: refused on push, then gone from {self.spec.url}")
        raise InboxTaken(theirs)


def owner_marker() -> str:
    """``PID:START`` of this process: what its tools carry, so a sweep knows whose they are."""
    me = read_stat(os.getpid())
    return f"{os.getpid()}:{me.starttime if me else 0}"


def cache_dir(spec_cache: str | None) -> Path:
    raw = spec_cache or os.environ.get(CACHE_ENV) or "~/.cache/uet"
    return Path(raw).expanduser()


_mirrors: dict[Path, Repo] = {}


def machine_cache(spec_cache: str | None, repo_key: str
                  ) -> tuple[Path, str, filelock.BaseFileLock]:
    """(cache root, the repository's key on this machine, the lock of its mirror)."""
    root = cache_dir(spec_cache)
    key = hashlib.sha256(repo_key.encode()).hexdigest()[:16]
    mirrors = root / "mirrors"
    mirrors.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(mirrors / f"{key}.lock"), thread_local=False,
                             is_singleton=False)
    return root, key, lock


def mirror_at(root: Path, key: str) -> Repo:
    """The machine's mirror of the repository ``key`` (the caller holds its lock)."""
    return _mirror(root / "mirrors" / f"{key}.git")


def _mirror(path: Path) -> Repo:
    """This process's handle on the machine's mirror at ``path`` (the caller holds its lock)."""
    repo = _mirrors.get(path)
    if repo is None or not (path / "HEAD").is_file():
        repo = _mirrors[path] = open_mirror(path)
    return repo


class JobPool:
    """The machine's pool as one job sees it: what the job still holds when it ends (an
    attempt cancelled keeps its worktree for a local resume; here nobody resumes it) goes
    back to the pool, to be reset by the next job."""

    def __init__(self, pool: WorktreePool) -> None:
        self.pool = pool
        self.held: dict[int, Worktree] = {}

    @property
    def size(self) -> int:
        return self.pool.size

    def acquire(self, base: str, label: str | None = None) -> Worktree:
        wt = self.pool.acquire(base, label)
        self.held[wt.slot] = wt
        return wt

    def reset(self, wt: Worktree, base: str) -> None:
        self.pool.reset(wt, base)

    def release(self, wt: Worktree) -> None:
        self.held.pop(wt.slot, None)
        self.pool.release(wt)

    def release_all(self) -> None:
        for wt in list(self.held.values()):
            self.release(wt)


_pools: dict[tuple[str, str], WorktreePool] = {}
_pools_lock = threading.Lock()


def pool_for(mirror: Repo, root: Path, config: Config) -> WorktreePool:
    """This process's pool over the machine's worktrees of ``mirror`` (one per distinct
    ``[worktree]`` setting). Slots a dead worker left holding unrecorded changes are handed
    back at once: the coordinator runs that attempt again (or reuses its inbox patch)."""
    wcfg = config.worktree
    key = (str(root), repr((wcfg.keep_ignored, list(wcfg.setup))))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = WorktreePool(mirror, root=root, size=1, keep_ignored=wcfg.keep_ignored,
                                setup=list(wcfg.setup))
            for orphan in pool.orphans():
                pool.release(orphan)
            _pools[key] = pool
        return pool


def where() -> tuple[str, str]:
    """(host, worker) for the ledger: the machine's name and the Dask worker's address."""
    host = socket.gethostname()
    try:
        # why lazy: distributed is an optional extra; a direct call (tests, bench) has none
        from distributed import get_worker
        return host, str(get_worker().address)
    except (ImportError, ValueError):
        return host, f"pid-{os.getpid()}"


def cancel_event(name: str) -> Any:
    """The coordinator's ``distributed.Event``, or None outside a Dask worker. Dask binds it
    to the task's thread: only that thread may wait on it."""
    if not name:
        return None
    try:
        from distributed import Event  # why lazy: optional extra, only inside a Dask worker
        return Event(name)
    except (ImportError, ValueError):
        return None


_T = TypeVar("_T")


def in_thread(work: Callable[[], _T], event: Any, cancel: threading.Event) -> _T:
    """Run ``work`` in a thread of its own while this (the task's) thread polls ``event``,
    setting ``cancel`` (which ``run_process`` watches) when the coordinator sets it."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["out"] = work()
        except BaseException as exc:  # re-raised in the task's thread, for Dask to report
            box["error"] = exc

    thread = threading.Thread(target=target, name="uet-job", daemon=True)
    thread.start()
    while thread.is_alive():
        if event is None or cancel.is_set():
            thread.join()
            break
        thread.join(CANCEL_POLL)  # returns as soon as the attempt ends: no poll's delay
        try:
            if thread.is_alive() and event.is_set():
                cancel.set()
        except Exception:  # the scheduler went away: the tool's own timeout still holds
            event = None
    if "error" in box:
        raise box["error"]
    return box["out"]


class _Spec(Protocol):
    """What ``start_job`` reads of a job's spec (``JobSpec``, ``remoteverify.VerifySpec``)."""

    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def ws(self) -> dict[str, Any]: ...
    @property
    def url(self) -> str: ...
    @property
    def repo_key(self) -> str: ...
    @property
    def token(self) -> str | None: ...
    @property
    def cache(self) -> str | None: ...


@dataclass(frozen=True)
class JobStart:
    """Where a job stands once it has its commits in the machine's mirror."""

    started: float  # time.monotonic() when the job began
    host: str
    worker: str
    config: Config
    ws: Workstream
    root: Path  # the machine's cache
    key: str  # the repository's key in it
    lock: filelock.BaseFileLock  # the mirror's lock (released)
    mirror: Repo
    fetched: float  # seconds from the start until the commits were in the mirror


def start_job(spec: _Spec, commits: list[str], *, tools: bool = False) -> JobStart:
    """The first steps of every job on a worker: the versions check (before anything is
    touched), the spec's config and workstream, and ``commits`` fetched by id into the
    machine's mirror under its lock. ``tools``: the job may run the workstream's tool, so
    the mirror first learns to ignore the AI tools' droppings."""
    check_versions(spec)
    started = time.monotonic()
    host, worker = where()
    config = Config.model_validate(spec.config)
    ws = Workstream.model_validate(spec.ws)
    root, key, lock = machine_cache(spec.cache, spec.repo_key)
    with lock:
        mirror = mirror_at(root, key)
        if tools and ws.tool in PRESETS:
            prepare_repo_for_tools(mirror)  # the AI tools' droppings are never changes
        fetch_commits(mirror, spec.url, commits, token=spec.token)
    return JobStart(started, host, worker, config, ws, root, key, lock, mirror,
                    time.monotonic() - started)


def run_job(spec: JobSpec) -> JobResult:
    """Run one attempt on this machine (see the module doc). Raises on uet's own failure;
    the coordinator records it as ``internal-error``."""
    job = start_job(spec, [spec.base, *([spec.reuse] if spec.reuse else [])], tools=True)
    started, host, worker, config, ws = job.started, job.host, job.worker, job.config, job.ws
    root, key, lock, mirror, fetched = job.root, job.key, job.lock, job.mirror, job.fetched
    logs = root / "logs" / f"{spec.run}-{ws.id}-{spec.attempt}-{os.getpid()}"
    clock = StepClock(started)
    ctx = JobContext(mirror, config, JobPool(pool_for(mirror, root / "worktrees" / key,
                                                      config)), spec, ws, logs, observer=clock)
    event = cancel_event(spec.cancel_event)
    reused = spec.reuse

    def attempt() -> WorkerOutcome:
        nonlocal reused
        if reused is not None:
            return _check_inbox_patch(ctx, ws, reused, lock)
        try:
            return run_attempt(ctx, ws.id, worker=0, base=spec.base, attempt=spec.attempt,
                               on_error=None)
        except InboxTaken as taken:
            reused = taken.oid
            ctx.records.clear()
            return _check_inbox_patch(ctx, ws, reused, lock)

    try:
        out = in_thread(attempt, event, ctx.cancel)
    finally:
        ctx.pool.release_all()
        shutil.rmtree(logs, ignore_errors=True)
    return JobResult(ctx.records, out.state, out.reason, out.tool_failed, out.duration,
                     ctx.breaker.seen, reused or ctx.pushed, host, worker, reused is not None,
                     {"fetch": fetched, "job": time.monotonic() - started}, clock.steps)


def _check_inbox_patch(ctx: JobContext, ws: Workstream, patch: str,
                       lock: filelock.BaseFileLock) -> WorkerOutcome:
    """The attempt's patch is in the inbox already: record it ``created`` and check it."""
    with lock:
        fetch_commits(ctx.repo, ctx.spec.url, [patch], token=ctx.spec.token)
    ref = inbox_ref(ctx.run_id, ws.id, ctx.spec.attempt)
    ctx.records.append({"to": "created", "attempt": ctx.spec.attempt, "reason": None,
                        "detail": f"the patch of {ref} (an earlier run of this job pushed it)",
                        "shown_reason": None, "kw": {"patch": patch}})
    wt = ctx.pool.acquire(patch, f"{ctx.run_id}/{ws.id}/{ctx.spec.attempt}")
    try:
        return check_patch(ctx, ws.id, worker=0, attempt=ctx.spec.attempt, patch=patch,
                           changes=None, wt=wt, state="created")
    finally:
        ctx.pool.release(wt)


def stale_tools() -> list[int]:
    """Tool processes (``UET_DASK_OWNER`` set) whose worker process is gone."""
    out: list[int] = []
    for p in all_procs().values():
        if p.state == "Z":
            continue
        owner = _environ_value(p.pid, OWNER_VAR)
        if owner is None:
            continue
        pid, _, start = owner.partition(":")
        if not (pid.isdigit() and start.isdigit()):
            continue
        alive = read_stat(int(pid))
        if alive is None or alive.starttime != int(start) or alive.state == "Z":
            out.append(p.pid)
    return sorted(out)


def sweep_stale_tools(grace: float = 2.0) -> list[int]:
    """Terminate, then kill, the tools of dead workers on this machine; their pids."""
    return kill_pids(stale_tools, grace=grace)


def _environ_value(pid: int, name: str) -> str | None:
    try:
        data = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in data.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def sweep_plugin() -> Any:
    """A ``distributed.WorkerPlugin`` that sweeps a machine's stale tools when a worker starts
    (a nanny restarting a killed worker starts its replacement: Dask alone leaves the dead
    one's tools running)."""
    # why lazy: distributed is an optional extra, imported only when --executor dask:// is used
    from distributed.diagnostics.plugin import WorkerPlugin

    class UetSweep(WorkerPlugin):  # type: ignore[misc]
        name = "uet-sweep-stale-tools"

        def setup(self, worker: Any) -> None:
            sweep_stale_tools()

    return UetSweep()
