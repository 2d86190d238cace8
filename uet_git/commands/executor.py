"""The Dask back-end of a run (``commands/backend.py``): the executor options checked against
what the back-end needs (TLS off loopback, how the workers reach the repository) before the run
is recorded, and the Dask executor (``engine/executor.py``) opened for a run, with ``uet serve``
started for the workers when asked. The options themselves are folded into ``[executor]`` by
``commands/executorconfig.py`` (so the ledger's ``config.json`` keeps them and ``uet resume``
reconnects the same way); ``UET_EXECUTOR`` (an address, or ``local``) overrides the recorded
address, for a resume on a scheduler that moved.
"""

from __future__ import annotations

from uet_git.commands.executorconfig import env_override
from uet_git.commands.serve import start_server
from uet_git.engine.events import Observer
from uet_git.engine.executor import (
    DaskExecutor,
    Transport,
    connect,
    default_transport,
    security_for,
)
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config, ExecutorConfig


def check_executor(repo: Repo, cfg: ExecutorConfig) -> None:
    """An ``[executor]`` (options and ``UET_EXECUTOR`` folded in) that needs TLS, or whose
    workers cannot reach the repository, is a one-line error."""
    if cfg.address is not None:
        security_for(cfg)
        if not cfg.serve:
            default_transport(repo, cfg)


def open_executor(repo: Repo, run: str, config: Config, observer: Observer
                  ) -> DaskExecutor | None:
    """The run's Dask executor (None: local threads), connected, with ``uet serve`` running
    for it when ``[executor] serve`` is set (closed with the executor)."""
    cfg = env_override(config.executor)
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

