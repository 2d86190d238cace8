"""A run's ``[executor]`` with the command line's ``--executor`` / ``--remote`` / ``--serve`` /
``--insecure`` folded over it and ``UET_EXECUTOR`` (an address, or ``local``) over both (for a
resume on a scheduler that moved), without the Dask back-end: a run whose result names no
scheduler runs on local threads and never imports it (``commands/backend.py``). The checks
that need the back-end (TLS, how the workers reach the repository) are
``commands/executor.py``'s ``check_executor``.
"""

from __future__ import annotations

import os

from uet_git.engine.context import RunContext
from uet_git.engine.options import RunOptions
from uet_git.errors import UetError
from uet_git.spec.models import Config, ExecutorConfig

ENV = "UET_EXECUTOR"


def fold_options(cfg: ExecutorConfig, options: RunOptions) -> ExecutorConfig:
    """``cfg`` with the command line's executor options over it (not yet ``UET_EXECUTOR``); a
    bad address is a one-line error."""
    given: dict[str, object] = {k: v for k, v in (("address", options.executor),
                                                  ("remote", options.remote),
                                                  ("serve", options.serve)) if v is not None}
    if options.insecure:
        given["insecure"] = True
    if given.get("remote"):
        given["serve"] = None
    elif given.get("serve"):
        given["remote"] = None
    if not given:
        return cfg
    try:
        return ExecutorConfig.model_validate({**cfg.model_dump(), **given})
    except ValueError as exc:
        first = str(exc).splitlines()
        raise UetError(f"--executor: {first[-2].strip() if len(first) > 1 else exc}") from None


def env_override(cfg: ExecutorConfig) -> ExecutorConfig:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return cfg
    try:
        return ExecutorConfig.model_validate({**cfg.model_dump(), "address": raw})
    except ValueError:
        raise UetError(f"{ENV}={raw!r}: expected local, dask://HOST:PORT or tls://HOST:PORT"
                       ) from None


def fold_executor(config: Config, options: RunOptions) -> Config:
    """``config`` with the command line's options and ``UET_EXECUTOR`` over ``[executor]``:
    what the run records."""
    return config.model_copy(update={"executor": env_override(fold_options(config.executor,
                                                                           options))})


def wants_executor(config: Config) -> bool:
    """Whether a run of ``config`` runs on a Dask scheduler (``UET_EXECUTOR`` over its
    ``[executor]``): then, and only then, it needs the back-end."""
    return env_override(config.executor).address is not None


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
