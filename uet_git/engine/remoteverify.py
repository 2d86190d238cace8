"""The job a Dask worker runs to judge one candidate (``run_verify_job``): the queue's or the
integrator's check of ``tip + patch`` when the run has an executor.

The coordinator made the candidate and keeps it alive by a ref (``refs/uet/candidates/RUN/N``,
or the workstream's ``applied`` state ref); it publishes it where the workers fetch from (the
repository itself, or ``refs/uet-candidates/RUN/...`` on a remote, see ``engine/executor.py``).
The job fetches the candidate, the commit the workstream's acceptance passed on and the run's
base by id into the machine's mirror, reads the checks from that base (``verify.checks_at``:
the base's ``uet.toml`` hooks, never the candidate's), and runs ``verify.verify_candidate``
there: a worktree from the machine's pool, the same sandbox, tamper guard and process rules as
on the coordinator. What the coordinator's verdict cache already knows for the candidate's
tree comes with the spec (``known``), and what passed here goes back (``passed``).

Back comes only data: the outcome, reason, one-line detail and evidence, where it ran and how
long each part took. The coordinator alone judges what that means for the workstream, moves
refs and writes the ledger.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from uet_git import __version__
from uet_git.engine.events import NullObserver
from uet_git.engine.guard import guard_for
from uet_git.engine.remotejob import (
    OWNER_VAR,
    PROTOCOL,
    JobPool,
    cancel_event,
    in_thread,
    owner_marker,
    pool_for,
    start_job,
)
from uet_git.engine.verdicts import VerdictCache, acceptance_key, hooks_key
from uet_git.engine.verify import Bench, Candidate, Checks, checks_at, verify_candidate
from uet_git.gitrepo import odb
from uet_git.spec.models import Workstream
from uet_git.workers.sandbox import available

PARTS = ("acceptance", "hooks")  # what a verdict cache holds passes of


def part_keys(ws: Workstream, checks: Checks) -> dict[str, str]:
    """The verdict cache's key of each of ``PARTS`` for ``ws`` judged with ``checks``: the
    same on the coordinator and the worker, so a pass known on one side holds on the other."""
    return {"acceptance": acceptance_key(ws), "hooks": hooks_key(checks.base, checks.hooks)}


@dataclass(frozen=True)
class VerifySpec:
    """One candidate to judge, as the coordinator submits it (plain data)."""

    run: str
    ws: dict[str, Any]  # Workstream.model_dump(by_alias=True)
    config: dict[str, Any]  # the run's checks' Config.model_dump(by_alias=True)
    base: str  # the run's base: where the checks (hooks) come from
    attempt: int
    patch: str
    candidate: str
    tip: str  # what the candidate was made on
    verified: str  # the commit whose tree the workstream's acceptance passed on
    url: str
    repo_key: str
    cancel_event: str = ""
    token: str | None = None
    target: str | None = None
    cache: str | None = None
    force: bool = False  # acceptance runs even on the verified tree (retry --reapply, flakes)
    known: tuple[str, ...] = ()  # PARTS the coordinator's cache says passed on this tree
    uet_version: str = __version__
    protocol: int = PROTOCOL


@dataclass
class VerifyResult:
    outcome: str  # verify.Outcome's value
    reason: str | None
    detail: str
    evidence: dict[str, bytes]
    host: str
    worker: str
    passed: list[str] = field(default_factory=list)  # PARTS newly passed on this tree
    timings: dict[str, float] = field(default_factory=dict)  # fetch, verify, job (s)


def run_verify_job(spec: VerifySpec) -> VerifyResult:
    """Judge one candidate on this machine (see the module doc). Raises on uet's own failure
    (the coordinator records it as ``internal-error``)."""
    job = start_job(spec, list(dict.fromkeys([spec.candidate, spec.verified, spec.base])))
    started, host, worker, config, ws = job.started, job.host, job.worker, job.config, job.ws
    root, key, mirror, fetched = job.root, job.key, job.mirror, job.fetched
    # The checks' processes carry this worker's mark like a tool's: a worker that dies
    # mid-check has them swept by its replacement (remotejob.sweep_plugin).
    os.environ[OWNER_VAR] = owner_marker()
    checks = checks_at(mirror, spec.base, config)
    tree = odb.tree_of(mirror, spec.candidate)
    keys = part_keys(ws, checks)
    cache = VerdictCache()
    for part in spec.known:
        if part in keys:
            cache.add(part, tree, keys[part])
    pool = JobPool(pool_for(mirror, root / "worktrees" / key, config))
    sandboxed = config.sandbox.mode == "bwrap" and available() is None
    cancel = threading.Event()
    bench = Bench(spec.run, spec.target, pool, NullObserver(), cancel,  # type: ignore[arg-type]
                  guard_for(mirror, config.sandbox, sandboxed=sandboxed), cache=cache)
    cand = Candidate(ws, spec.attempt, spec.patch, spec.candidate, spec.tip, spec.verified)
    logs = root / "logs" / f"{spec.run}-{ws.id}-{spec.attempt}-verify-{os.getpid()}"
    label = f"{spec.run}/{ws.id}/{spec.attempt}/remote-candidate"
    try:
        verdict = in_thread(lambda: verify_candidate(mirror, cand, checks, bench, log_dir=logs,
                                                     label=label, force=spec.force),
                            cancel_event(spec.cancel_event), cancel)
    finally:
        pool.release_all()
        shutil.rmtree(logs, ignore_errors=True)
    passed = [p for p in PARTS if p not in spec.known and cache.passed(p, tree, keys[p])]
    return VerifyResult(verdict.outcome.value, verdict.reason, verdict.detail,
                        dict(verdict.evidence), host, worker, passed,
                        {"fetch": round(fetched, 3),
                         "verify": round(time.monotonic() - started - fetched, 3),
                         "job": round(time.monotonic() - started, 3)})
