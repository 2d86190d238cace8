"""Where a run's attempts execute: the ``--executor`` / ``--remote`` / ``--serve`` /
``--insecure`` options folded into ``[executor]`` (so the ledger's ``config.json`` keeps them
and ``uet resume`` reconnects the same way), and opening and closing the Dask executor
(``engine/executor.py``) around a run, with ``uet serve`` started for the workers when asked.

``UET_EXECUTOR`` (an address, or ``local``) overrides the recorded address, for a resume on a
scheduler that moved.
"""

from __future__ import annotations

import os

from uet_git.commands.serve import start_server
from uet_git.engine.context import RunContext
from uet_git.engine.events import Observer
from uet_git.engine.executor import (
    DaskExecutor,
    Transport,
    connect,
    default_transport,
    security_for,
)
from uet_git.engine.options import RunOptions
from uet_git.errors import UetError
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config, ExecutorConfig

ENV = "UET_EXECUTOR"


def with_executor(repo: Repo, config: Config, options: RunOptions) -> Config:
    """``config`` with the command line's executor options over ``[executor]``, checked now,
    before the run is recorded: an address that needs TLS, workers that cannot reach the
    repository, a bad address are one-line errors."""
    cfg = config.executor
    given = {k: v for k, v in (("address", options.executor), ("remote", options.remote),
                               ("serve", options.serve)) if v is not None}
    if options.insecure:
        given["insecure"] = True
    if given.get("remote"):
        given["serve"] = None
    elif given.get("serve"):
        given["remote"] = None
    if given:
        try:
            cfg = ExecutorConfig.model_validate({**cfg.model_dump(), **given})
        except ValueError as exc:
            first = str(exc).splitlines()
            raise UetError(f"--executor: {first[-2].strip() if len(first) > 1 else exc}"
                           ) from None
    cfg = _env_override(cfg)
    if cfg.address is not None:
        security_for(cfg)
        if not cfg.serve:
            default_transport(repo, cfg)
    return config.model_copy(update={"executor": cfg})


def _env_override(cfg: ExecutorConfig) -> ExecutorConfig:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return cfg
    try:
        return ExecutorConfig.model_validate({**cfg.model_dump(), "address": raw})
    except ValueError:
        raise UetError(f"{ENV}={raw!r}: expected local, dask://HOST:PORT or tls://HOST:PORT"
                       ) from None


def open_executor(repo: Repo, run: str, config: Config, observer: Observer
                  ) -> DaskExecutor | None:
    """The run's Dask executor (None: local threads), connected, with ``uet serve`` running
    for it when ``[executor] serve`` is set (closed with the executor)."""
    cfg = _env_override(config.executor)
    if cfg.address is None:
        return None
    server = None
    if cfg.serve:
        server = start_server(repo, cfg.serve)
        transport = Transport(server.url, server.issue_token(run), here=True)
    else:
        transport = default_transport(repo, cfg)
    try:
        executor = connect(repo, run, cfg, transport)
    except BaseException:
        if server is not None:
            server.close()
        raise
    if server is not None:
        executor.closers.append(server.close)
        executor.closers.insert(0, lambda: server.revoke(run))
    observer.message(f"executor: Dask scheduler {cfg.address}; workers fetch from and push to "
                     f"{transport.url}")
    return executor


def finish_executor(ctx: RunContext, interrupted: bool) -> None:
    """After the loop: prune the inbox refs the ledger recorded (not after an interruption:
    a resume reuses them)."""
    if ctx.executor is None or interrupted:
        return
    try:
        ctx.executor.finish(ctx.repo)
    except UetError as exc:  # pruning is housekeeping: the run's results are recorded
        ctx.observer.message(f"warning: could not prune the run's inbox refs: {exc}")


def close_executor(ctx: RunContext) -> None:
    if ctx.executor is not None:
        ctx.executor.close()
