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

Candidates: with an executor the run's candidate checks run on workers too. ``verify`` is the
``remote`` of the benches the queue and the integrator judge with (``verify.Bench``): once
``verify.verify_candidate`` found something to run on a candidate, it hands the candidate
here; the candidate (kept alive here by its ``refs/uet/candidates/RUN/N`` or state ref) is
published where workers fetch (nothing to do when they fetch from this repository or through
``uet serve``; else pushed to ``refs/uet-candidates/RUN/...`` on the remote and deleted after
the verdict), ``remoteverify.run_verify_job`` judges it on a worker, and the verdict comes back
as data: the outcome and reason only from the closed set, the evidence capped, the trailers
this side derives itself (``may_change_checks``), where it ran in the detail (and as
``Uet-Host``/``Uet-Worker`` trailers of ``verified``). The queue or integrator records it as
for a local verdict.

Versions: a job made here carries this uet's version and the job protocol; a worker of
another version fails it with one line naming both (``remotejob.check_versions``), recorded
as the attempt's ``internal-error``.

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
from uet_git.engine.remotejob import (
    JobResult,
    JobSpec,
    VersionMismatch,
    run_job,
    sweep_plugin,
    version_problem,
    worker_version,
)
from uet_git.engine.remotesteps import (
    HOST_TRAILER,
    REMOTE_STEPS,
    WORKER_TRAILER,
    steps_trailer,
    steps_words,
)
from uet_git.engine.remoteverify import (
    PARTS,
    VerifyResult,
    VerifySpec,
    part_keys,
    run_verify_job,
)
from uet_git.engine.verify import (
    MAY_CHANGE_CHECKS,
    Bench,
    Candidate,
    Checks,
    Outcome,
    Verdict,
    changes_checks,
)
from uet_git.errors import UetError
from uet_git.gitrepo import odb
from uet_git.gitrepo.mirror import fetch_refs, push_refs, remote_refs
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.ledger.inbox import prune_inbox
from uet_git.ledger.layout import inbox_prefix, inbox_ref, parse_ref, patch_ref
from uet_git.spec.models import ExecutorConfig, Workstream

BASE_REF_ROOT = "refs/uet-base/"  # outside refs/uet/: not a run's ref, only keeps bases alive
CANDIDATE_REF_ROOT = "refs/uet-candidates/"  # the same, for candidates judged on a remote
VERIFY_REASONS = ("verify-failed", "hook-failed", "tampered")  # a failed remote verdict's
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


def _stopped(result: Any) -> bool:
    """A job's answer that it was stopped before it finished (an attempt or a judging)."""
    return getattr(result, "state", "") is None or \
        getattr(result, "outcome", None) == Outcome.CANCELLED.value


def job_budget(ws: Workstream) -> float:
    """How long the coordinator waits for one job before it cancels it: every command of the
    attempt at its full timeout, each try, plus a margin for queueing on the cluster (the
    worker's own timeouts end a slow tool long before)."""
    commands = len(ws.setup) + 1 + len(ws.acceptance)
    return commands * ws.timeout * (ws.retries + 1) + JOB_MARGIN


def verify_budget(ws: Workstream, checks: Checks) -> float:
    """The same for judging one candidate: each acceptance command and hook at its timeout."""
    return (len(ws.acceptance) + len(checks.hooks)) * ws.timeout + JOB_MARGIN


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
        _check_worker_versions(client, cfg)
        existing = remote_refs(repo, transport.url, inbox_prefix(run) + "*",
                               token=transport.token)
    except BaseException:
        client.close()
        raise
    key = f"{socket.gethostname()}:{repo.common_dir.resolve()}"
    return DaskExecutor(client, transport, run, cfg, key, existing)


def _check_worker_versions(client: Any, cfg: ExecutorConfig) -> None:
    """Refuse the run in one line when a worker connected now runs another uet (each job
    checks again: workers may join later). A worker that cannot answer is left to that."""
    try:
        versions = client.run(worker_version)
    except Exception:  # an old worker without worker_version, one dying: its jobs will say
        return
    problem = version_problem(versions)
    if problem is not None:
        raise UetError(f"--executor {cfg.address}: {problem}")


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
            result = self._wait(run_job, spec, name, cancel=ctx.cancel,
                                budget=job_budget(ws), what=ws_id)
        finally:
            ctx.observer.worker(worker, None)
        if result is None or result.state is None:  # cancelled before it reported: resume
            return WorkerOutcome(ws_id, None)  # runs it again
        return self._record(ctx, ws_id, attempt, result, slot=worker, received=time.time())

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

    def _wait(self, fn: Callable[[Any], Any], spec: Any, event_name: str, *,
              cancel: threading.Event | None, budget: float, what: str) -> Any:
        """Submit ``fn(spec)`` and wait for its result while watching ``cancel`` (passed on to
        the job through the ``distributed.Event`` ``event_name``); None when cancelled and
        the job gave no answer within ``CANCEL_GRACE``. Over ``budget`` seconds the job is
        stopped the same way and fails in one line (a job stopped for that is not a
        cancelled attempt for a resume to run again: its commands' own timeouts failed)."""
        # why lazy: distributed is an optional extra, imported only for --executor
        from distributed import Event

        event = Event(event_name, client=self.client)
        # Dask re-runs a job whose worker died (allowed-failures); retries=1 more for an error
        # the job raised (a mirror's fetch cut by a network blip).
        future = self.client.submit(fn, spec, pure=False, retries=1,
                                    key=f"uet-{event_name.removeprefix('uet-cancel-')}")
        # Polled through a callback, not ``future.result(timeout=...)``: under load that call
        # can lose a race between its two timeouts and raise UnboundLocalError from Dask's
        # own ``sync``; ``result()`` is only asked for once the job is done.
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        cancelled_at: float | None = None
        deadline = time.monotonic() + budget
        stop = False
        try:
            while True:
                if done.wait(0.25) or future.done():
                    try:
                        result = future.result()
                    except VersionMismatch as exc:
                        raise UetError(f"{what}: {exc}") from None
                    if cancelled_at is not None and not stop and _stopped(result):
                        raise UetError(f"{what}: the Dask job ran over its {budget:g} s and "
                                       "was stopped")
                    return result
                overdue = time.monotonic() > deadline
                stop = cancel is not None and cancel.is_set()
                if (stop or overdue) and cancelled_at is None:
                    event.set()  # reaches the tool: the job polls it
                    cancelled_at = time.monotonic()
                if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE:
                    future.cancel()
                    if not stop:
                        raise UetError(f"{what}: the Dask job gave no answer within "
                                       f"{budget:.0f} s")
                    return None
        finally:
            if cancelled_at is not None:  # the scheduler keeps a set event: drop it
                with contextlib.suppress(Exception):
                    event.clear()

    def _record(self, ctx: RunContext, ws_id: str, attempt: int, res: JobResult, *,
                slot: int = 0, received: float | None = None) -> WorkerOutcome:
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
        timed = self._timed(res, slot, received)
        for k, rec in enumerate(res.records):
            last = k == len(res.records) - 1
            to, kw = _from_worker(rec, patch)
            kw["trailers"] = {**kw["trailers"], **where}
            if to == "validated" and patch:
                reason, detail = validation(ctx.repo, ws, ctx.config.verify, patch)
                if reason is not None:
                    ctx.record(ws_id, "quarantined", attempt=attempt, reason=reason,
                               detail=f"{detail}; {timed[1]}"[:DETAIL_MAX],
                               trailers={**where, **timed[0]})
                    return WorkerOutcome(ws_id, "quarantined", reason, False, res.duration)
            if to == "queued" and patch and ws.acceptance:
                kw["trailers"].update(ctx.accepted_on(ws, patch))
            detail = str(rec.get("detail", ""))
            if last:  # the attempt's steps and where it ran, with its last worker transition
                kw["trailers"].update(timed[0])
                detail = f"{detail}; {timed[1]}" if detail else timed[1]
            ctx.record(ws_id, to, attempt=attempt, reason=rec.get("reason"),
                       detail=detail[:DETAIL_MAX], shown_reason=rec.get("shown_reason"), **kw)
        return WorkerOutcome(ws_id, res.state, res.reason, res.tool_failed, res.duration)

    @staticmethod
    def _timed(res: JobResult, slot: int, received: float | None) -> tuple[dict[str, str], str]:
        """The ``Uet-Remote-Steps`` trailer and its words (``engine/remotesteps.py``)."""
        job = res.timings.get("job") if isinstance(res.timings, dict) else None
        fetch = res.timings.get("fetch") if isinstance(res.timings, dict) else None
        steps = getattr(res, "steps", None)  # a result of a worker without it: none
        steps = steps if isinstance(steps, list) else []
        steps = [s for s in steps if isinstance(s, dict)]
        fetch_s = float(fetch) if isinstance(fetch, int | float) else None
        words = steps_words(str(res.host)[:100], str(res.worker)[:100], fetch_s, steps)
        if received is None or not isinstance(job, int | float):
            return {}, words
        return {REMOTE_STEPS: steps_trailer(received - float(job), slot, fetch_s, steps)}, words

    def verify(self, repo: Repo, cand: Candidate, checks: Checks, bench: Bench, *,
               log_dir: Path, label: str, force: bool = False) -> Verdict:
        """Judge ``cand`` on a Dask worker (module doc): what ``verify.verify_candidate``
        does when the bench's ``remote`` is this executor and something has to run."""
        ws = cand.ws
        tree = odb.tree_of(repo, cand.candidate)
        keys = part_keys(ws, checks)
        known = tuple(p for p in PARTS
                      if bench.cache is not None and bench.cache.passed(p, tree, keys[p]))
        name = f"uet-cancel-{self.run_id}-{ws.id}-{cand.attempt}-v{secrets.token_hex(4)}"
        published = self._publish_candidate(repo, cand)
        spec = VerifySpec(run=self.run_id, ws=ws.model_dump(mode="json", by_alias=True),
                          config=checks.config.model_dump(mode="json", by_alias=True),
                          base=checks.base, attempt=cand.attempt, patch=cand.patch,
                          candidate=cand.candidate, tip=cand.tip, verified=cand.verified,
                          url=self.transport.url, repo_key=self.repo_key, cancel_event=name,
                          token=self.transport.token, target=bench.target, cache=self.cfg.cache,
                          force=force, known=known)
        bench.observer.step_started(ws.id, bench.shown, "verify", attempt=cand.attempt)
        bench.observer.worker(bench.shown, ws.id, "remote verify")
        res: VerifyResult | None = None
        try:
            res = self._wait(run_verify_job, spec, name, cancel=bench.cancel,
                             budget=verify_budget(ws, checks), what=ws.id)
        finally:
            if published:
                with contextlib.suppress(GitError):  # housekeeping: finish prunes the rest
                    push_refs(repo, self.transport.url, [(r, None) for r in published],
                              token=self.transport.token)
            verdict = Verdict(Outcome.CANCELLED) if res is None else \
                self._verdict(repo, cand, checks, res)
            bench.observer.step_finished(
                ws.id, bench.shown, "verify", attempt=cand.attempt,
                ok=verdict.outcome is Outcome.OK,
                detail=f"on {str(res.host)[:100]}" if res is not None else "cancelled")
        if verdict.outcome is Outcome.OK and bench.cache is not None and res is not None:
            for part in res.passed:
                if part in keys:  # the worker's word, as its verdict is
                    bench.cache.add(part, tree, keys[part])
        return verdict

    def _publish_candidate(self, repo: Repo, cand: Candidate) -> list[str]:
        """Make the candidate and the commit its acceptance passed on fetchable by the
        workers; the refs to delete afterwards (none when they fetch from here)."""
        if self.transport.here:
            return []
        tag = f"{CANDIDATE_REF_ROOT}{self.run_id}/{secrets.token_hex(6)}"
        refs = [(f"{tag}-candidate", cand.candidate)]
        if cand.verified != cand.candidate:
            refs.append((f"{tag}-verified", cand.verified))
        push_refs(repo, self.transport.url, refs, token=self.transport.token)
        return [r for r, _ in refs]

    @staticmethod
    def _verdict(repo: Repo, cand: Candidate, checks: Checks, res: VerifyResult) -> Verdict:
        """A worker's verdict as data: outcome and reason from the closed set, the evidence
        capped, the trailers derived here, where it ran in the detail and trailers."""
        try:
            outcome = Outcome(res.outcome)
        except ValueError:
            raise UetError(f"{cand.ws.id}: a Dask worker reported the verdict "
                           f"{str(res.outcome)[:40]!r}") from None
        reason = res.reason if outcome is Outcome.FAILED else None
        if outcome is Outcome.FAILED and reason not in VERIFY_REASONS:
            raise UetError(f"{cand.ws.id}: a Dask worker reported the failure "
                           f"{str(reason)[:40]!r}")
        raw = res.evidence if isinstance(res.evidence, dict) else {}
        evidence = {str(k)[:100]: bytes(v) for k, v in list(raw.items())[:EVIDENCE_ENTRIES]}
        host, worker = str(res.host)[:100], str(res.worker)[:100]
        t = res.timings if isinstance(res.timings, dict) else {}
        where = (f"checked on {host} ({worker}) in {float(t.get('verify', 0.0)):.1f} s, "
                 f"fetch {float(t.get('fetch', 0.0)):.1f} s")
        evidence["remote.txt"] = f"{where}\n".encode()
        trailers = {HOST_TRAILER: host, WORKER_TRAILER: worker}
        if cand.ws.may_change_checks and changes_checks(repo, checks.config, cand.tip,
                                                        cand.candidate):
            trailers[MAY_CHANGE_CHECKS] = "true"
        detail = str(res.detail)[:DETAIL_MAX]
        return Verdict(outcome, reason, f"{detail}; {where}" if detail else where, evidence,
                       trailers if outcome is Outcome.OK else {})

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
        cands = f"{CANDIDATE_REF_ROOT}{self.run_id}/"
        there = remote_refs(repo, self.transport.url, inbox_prefix(self.run_id) + "*",
                            base_ref, cands + "*", token=self.transport.token)
        gone: list[tuple[str, str | None]] = [(base_ref, None)] if base_ref in there else []
        gone += [(name, None) for name in sorted(there) if name.startswith(cands)]
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
