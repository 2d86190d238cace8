"""The distributed executor: attempts run as Dask jobs (``remotejob.run_job``) on other
machines, the coordinator (this process) alone writes the ledger.

``connect`` opens the Dask client (``distributed`` is imported lazily, here and in the job's
module, only for ``--executor``: a local run and ``uet --help`` never import it) and registers
the worker plugin that kills a
dead worker's tools. ``DaskExecutor.run`` is what ``Engine._worker_job`` calls for each
attempt when ``RunContext.executor`` is set: it makes sure the workers can fetch the base
(pushed to ``refs/uet-base/RUN`` on a remote that is not this repository), submits the job,
waits for it while watching the run's cancel event (passed on to the job through a
``distributed.Event``), fetches the attempt's inbox ref and records the job's transitions
through the same ``ctx.record`` calls the local path makes, each with ``Uet-Host`` and
``Uet-Worker`` trailers. Validation is judged again here on the fetched patch (``pipeline.
validation``) before ``validated`` is recorded: what judges a patch never comes from a worker.

Idempotence: an attempt has one inbox ref, created once. If it exists when the attempt is
submitted (a killed coordinator's job pushed it), the job only checks that patch; a job that
finds it taken while pushing does the same. ``finish`` prunes the inbox refs whose attempts the
ledger recorded (and the base ref).

Security: anyone who can reach the Dask scheduler can run code on its workers. Off loopback
``connect`` requires TLS (``tls://`` or ``[executor] tls_ca/tls_cert/tls_key``) unless
``insecure`` says otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from uet_git.engine.context import RunContext
from uet_git.engine.pipeline import WORKER_SECONDS, WorkerOutcome, recheck_patch, validation
from uet_git.engine.remotejob import JobResult, JobSpec, run_job, sweep_plugin
from uet_git.errors import UetError
from uet_git.gitrepo.mirror import fetch_refs, push_refs, remote_refs
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.ledger.inbox import prune_inbox
from uet_git.ledger.layout import inbox_prefix, inbox_ref, parse_ref, patch_ref
from uet_git.spec.models import ExecutorConfig, Workstream

HOST_TRAILER = "Uet-Host"
WORKER_TRAILER = "Uet-Worker"
BASE_REF_ROOT = "refs/uet-base/"  # outside refs/uet/: not a run's ref, only keeps bases alive
CANCEL_GRACE = 30.0  # seconds a cancelled job gets to stop its tool and report
CONNECT_TIMEOUT = 10.0
# What a worker's report may say: the states of the worker path, the trailers it measures.
WORKER_STATES = ("created", "validated", "queued", "quarantined")
WORKER_TRAILERS = (WORKER_SECONDS,)
EVIDENCE_ENTRIES = 64
DETAIL_MAX = 4000
JOB_MARGIN = 600.0  # seconds a job may wait for a free worker on top of its commands' timeouts


def _from_worker(rec: dict[str, Any], patch: str | None) -> tuple[str, dict[str, Any]]:
    """One reported transition as ``ctx.record`` keywords: a state a worker may reach, its
    evidence (entries capped; the ledger caps each blob), only the trailers a worker may
    give, and the patch this side read from the inbox ref."""
    to = rec.get("to")
    if to not in WORKER_STATES:
        raise UetError(f"a Dask worker reported a transition to {str(to)[:40]!r}")
    kw = rec.get("kw") if isinstance(rec.get("kw"), dict) else {}
    evidence = kw.get("evidence") if isinstance(kw.get("evidence"), dict) else {}
    trailers = kw.get("trailers") if isinstance(kw.get("trailers"), dict) else {}
    out: dict[str, Any] = {
        "evidence": {str(k): bytes(v) for k, v in list(evidence.items())[:EVIDENCE_ENTRIES]},
        "trailers": {k: str(v)[:100] for k, v in trailers.items() if k in WORKER_TRAILERS},
    }
    if to == "created":
        if patch is None:
            raise UetError("a Dask worker reported a patch without pushing it")
        out["patch"] = patch
    return to, out


def job_budget(ws: Workstream) -> float:
    """How long the coordinator waits for one job before it cancels it: every command of the
    attempt at its full timeout, each try, plus a margin for queueing on the cluster (the
    worker's own timeouts end a slow tool long before)."""
    commands = len(ws.setup) + 1 + len(ws.acceptance)
    return commands * ws.timeout * (ws.retries + 1) + JOB_MARGIN


@dataclass(frozen=True)
class Transport:
    """How workers reach the repository: ``url`` (fetch and push), ``token`` (``uet serve``'s
    bearer token), ``here``: the URL is this repository itself (nothing to publish or fetch)."""

    url: str
    token: str | None = None
    here: bool = False


def _host_port(address: str) -> tuple[str, str]:
    scheme, _, rest = address.partition("://")
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    return scheme, host.strip("[]")


def is_loopback(address: str) -> bool:
    _, host = _host_port(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dask_address(cfg: ExecutorConfig) -> str:
    """The scheduler address Dask understands (``dask://`` is plain ``tcp://``)."""
    assert cfg.address is not None
    return "tcp://" + cfg.address.split("://", 1)[1] if cfg.address.startswith("dask://") \
        else cfg.address


def security_for(cfg: ExecutorConfig) -> Any:
    """The ``distributed.security.Security`` of the connection, or None for plain TCP (loopback,
    or ``insecure``); a one-line UetError when the address needs TLS and has none."""
    assert cfg.address is not None
    files = (cfg.tls_ca, cfg.tls_cert, cfg.tls_key)
    tls = cfg.address.startswith("tls://")
    if any(files) or tls:
        if not all(files):
            raise UetError(f"[executor] {cfg.address}: TLS needs tls_ca, tls_cert and tls_key "
                           "(PEM files)")
        for f in files:
            assert f is not None
            if not Path(f).expanduser().is_file():
                raise UetError(f"[executor] {f}: no such TLS file")
        # why lazy: distributed is an optional extra, imported only for --executor
        from distributed.security import Security
        return Security(tls_ca_file=str(Path(cfg.tls_ca or "").expanduser()),
                        tls_client_cert=str(Path(cfg.tls_cert or "").expanduser()),
                        tls_client_key=str(Path(cfg.tls_key or "").expanduser()),
                        require_encryption=True)
    if not is_loopback(cfg.address) and not cfg.insecure:
        raise UetError(f"--executor {cfg.address}: plain TCP off loopback lets anyone who can "
                       "reach the scheduler run code on its workers; use tls:// with "
                       "[executor] tls_ca/tls_cert/tls_key, or --insecure")
    return None


def default_transport(repo: Repo, cfg: ExecutorConfig) -> Transport:
    """``[executor] remote`` (or ``--remote``), else this repository's own ``file://`` URL when
    the scheduler is on loopback (its workers are on this machine)."""
    if cfg.remote:
        return Transport(cfg.remote, here=_is_this_repo(repo, cfg.remote))
    assert cfg.address is not None
    if not is_loopback(cfg.address):
        raise UetError(f"--executor {cfg.address}: workers on other machines need --remote URL "
                       "(a git URL they can fetch from and push to) or --serve HOST:PORT")
    return Transport(repo.common_dir.as_uri(), here=True)


def _is_this_repo(repo: Repo, url: str) -> bool:
    parsed = urlparse(url)
    path = Path(parsed.path) if parsed.scheme == "file" else Path(url) \
        if "://" not in url and ":" not in url.split("/", 1)[0] else None
    if path is None:
        return False
    try:
        real = path.resolve()
    except OSError:
        return False
    return real in (repo.common_dir.resolve(), repo.workdir.resolve())


def connect(repo: Repo, run: str, cfg: ExecutorConfig, transport: Transport) -> DaskExecutor:
    """A client on the scheduler at ``cfg.address``, the sweep plugin registered on its
    workers; one-line UetErrors for a missing extra, a refused address, no scheduler."""
    security = security_for(cfg)
    try:
        # why lazy: distributed is an optional extra, imported only for --executor
        from distributed import Client
    except ImportError as exc:
        raise UetError(f"--executor {cfg.address}: needs the distributed extra "
                       f"(pip install 'uet-git[distributed]'): {exc}") from exc
    try:
        client = Client(dask_address(cfg), security=security, timeout=CONNECT_TIMEOUT,
                        set_as_default=False)
    except OSError as exc:
        raise UetError(f"--executor {cfg.address}: cannot reach the Dask scheduler "
                       f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                       ) from exc
    try:
        client.register_plugin(sweep_plugin(), name="uet-sweep-stale-tools")
        existing = remote_refs(repo, transport.url, inbox_prefix(run) + "*",
                               token=transport.token)
    except BaseException:
        client.close()
        raise
    key = f"{socket.gethostname()}:{repo.common_dir.resolve()}"
    return DaskExecutor(client, transport, run, cfg, key, existing)


@dataclass
class DaskExecutor:
    """Runs attempts on Dask workers for one run (module doc). Thread-safe: each engine worker
    thread waits on its own job."""

    client: Any
    transport: Transport
    run_id: str
    cfg: ExecutorConfig
    repo_key: str
    existing: dict[str, str] = field(default_factory=dict)  # inbox refs there at the start
    _published: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    closers: list[Callable[[], None]] = field(default_factory=list)  # e.g. uet serve's

    def run(self, ctx: RunContext, ws_id: str, *, worker: int, base: str, attempt: int,
            recheck: tuple[str, str] | None = None) -> WorkerOutcome:
        """One attempt on a Dask worker, recorded here. A recheck (a patch recorded before a
        crash whose checks were not) runs locally: the patch is here already."""
        if recheck is not None:
            return recheck_patch(ctx, ws_id, worker=worker, attempt=attempt, patch=recheck[0],
                                 state=recheck[1])
        self._publish(ctx)
        ws = ctx.ws(ws_id)
        ref = inbox_ref(self.run_id, ws_id, attempt)
        name = f"uet-cancel-{self.run_id}-{ws_id}-{attempt}-{secrets.token_hex(4)}"
        spec = JobSpec(run=self.run_id, ws=ws.model_dump(mode="json", by_alias=True),
                       config=ctx.config.model_dump(mode="json", by_alias=True), base=base,
                       attempt=attempt, url=self.transport.url, repo_key=self.repo_key,
                       cancel_event=name, token=self.transport.token, target=ctx.target,
                       reuse=self.existing.get(ref), cache=self.cfg.cache)
        ctx.observer.worker(worker, ws_id, "remote")
        try:
            result = self._wait(ctx, name, spec)
        finally:
            ctx.observer.worker(worker, None)
        if result is None:  # cancelled before it reported: resume runs it again
            return WorkerOutcome(ws_id, None)
        return self._record(ctx, ws_id, attempt, result)

    def _publish(self, ctx: RunContext) -> None:
        """Make the integration tip (every base this run hands out is on it) fetchable."""
        if self.transport.here:
            return
        with self._lock:
            tip = ctx.ledger.integration_tip()
            if tip == self._published:
                return
            push_refs(ctx.repo, self.transport.url, [(BASE_REF_ROOT + self.run_id, tip)],
                      token=self.transport.token)
            self._published = tip

    def _wait(self, ctx: RunContext, event_name: str, spec: JobSpec) -> JobResult | None:
        # why lazy: distributed is an optional extra, imported only for --executor
        from distributed import Event

        event = Event(event_name, client=self.client)
        # Dask re-runs a job whose worker died (allowed-failures); retries=1 more for an error
        # the job raised (a mirror's fetch cut by a network blip).
        future = self.client.submit(run_job, spec, pure=False, retries=1,
                                    key=f"uet-{spec.run}-{spec.ws['id']}-{spec.attempt}-"
                                        f"{secrets.token_hex(4)}")
        cancelled_at: float | None = None
        deadline = time.monotonic() + job_budget(ctx.ws(spec.ws["id"]))
        try:
            while True:
                try:
                    result: JobResult = future.result(timeout=0.25)
                    break
                except TimeoutError:
                    pass
                overdue = time.monotonic() > deadline
                if (ctx.cancel.is_set() or overdue) and cancelled_at is None:
                    event.set()  # reaches the tool: the job polls it
                    cancelled_at = time.monotonic()
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE:
                    future.cancel()
                    if not ctx.cancel.is_set():
                        raise UetError(f"{spec.ws['id']}: the Dask job gave no answer within "
                                       f"{job_budget(ctx.ws(spec.ws['id'])):.0f} s")
                    return None
        finally:
            if cancelled_at is not None:  # the scheduler keeps a set event: drop it
                with contextlib.suppress(Exception):
                    event.clear()
        if result.state is None:
            return None
        return result

    def _record(self, ctx: RunContext, ws_id: str, attempt: int, res: JobResult
                ) -> WorkerOutcome:
        """Write the job's transitions to the ledger. The worker's report is taken as data,
        never as authority: the patch is the inbox ref's commit as this side sees it, the
        states are those a worker may reach, its trailers cannot name ledger facts, and
        validation is judged here again."""
        ws = ctx.ws(ws_id)
        ref = inbox_ref(self.run_id, ws_id, attempt)
        where = {HOST_TRAILER: str(res.host)[:200], WORKER_TRAILER: str(res.worker)[:200]}
        patch = self._inbox_patch(ctx, ref, res.patch) if res.patch else None
        if res.breaker == "success":
            ctx.breaker.success(ws.tool)
        elif res.breaker == "failure":
            ctx.breaker.failure(ws.tool)
        for rec in res.records:
            to, kw = _from_worker(rec, patch)
            kw["trailers"] = {**kw["trailers"], **where}
            if to == "validated" and patch:
                reason, detail = validation(ctx.repo, ws, ctx.config.verify, patch)
                if reason is not None:
                    ctx.record(ws_id, "quarantined", attempt=attempt, reason=reason,
                               detail=detail, trailers=where)
                    return WorkerOutcome(ws_id, "quarantined", reason, False, res.duration)
            if to == "queued" and patch and ws.acceptance:
                kw["trailers"].update(ctx.accepted_on(ws, patch))
            ctx.record(ws_id, to, attempt=attempt, reason=rec.get("reason"),
                       detail=str(rec.get("detail", ""))[:DETAIL_MAX],
                       shown_reason=rec.get("shown_reason"), **kw)
        return WorkerOutcome(ws_id, res.state, res.reason, res.tool_failed, res.duration)

    def _inbox_patch(self, ctx: RunContext, ref: str, reported: str) -> str:
        """The attempt's inbox ref here (fetched from a remote first): what was recorded is
        what the ref holds, and it must be what the worker says it pushed."""
        if self.transport.here:
            got = ctx.repo.read_ref(ref)
        else:
            got = fetch_refs(ctx.repo, self.transport.url, [ref],
                             token=self.transport.token).get(ref)
        if got is None or got != reported:
            raise GitError(f"{ref}: the worker reported {str(reported)[:12]}, the inbox ref "
                           f"holds {str(got)[:12]}")
        return got

    def finish(self, repo: Repo) -> None:
        """After the run: prune the inbox refs whose attempts the ledger recorded (here and on
        the remote) and the base ref. An unrecorded one stays for a resume to reuse."""
        prune_inbox(repo, self.run_id)
        if self.transport.here:
            return
        base_ref = BASE_REF_ROOT + self.run_id
        there = remote_refs(repo, self.transport.url, inbox_prefix(self.run_id) + "*",
                            base_ref, token=self.transport.token)
        gone: list[tuple[str, str | None]] = [(base_ref, None)] if base_ref in there else []
        for name, oid in sorted(there.items()):
            p = parse_ref(name)
            if p is None or p.ws is None or p.attempt is None:
                continue
            if repo.read_ref(patch_ref(self.run_id, p.ws, p.attempt)) == oid:
                gone.append((name, None))  # recorded here: the patch ref keeps it
        push_refs(repo, self.transport.url, gone, token=self.transport.token)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a scheduler already gone: nothing to close
            self.client.close(timeout=5)
        for close in self.closers:
            close()
