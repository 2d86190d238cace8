"""The slot through which a run reaches its Dask back-end (``commands/executor.py``: the
coordinator's executor, ``uet serve`` for the workers, the jobs they run).

The back-end costs a local run tens of milliseconds of imports (the HTTP server, the worker
job modules) before its first tool starts, so ``commands/run.py`` does not import it: the
``uet`` command puts a loader here (``cli/group.py``, the CLI's lazy loading, like its
commands'), and a run calls it only when its ``[executor]`` names a scheduler. A caller of
``execute_run`` or ``resume_run`` outside the command sets ``BACKEND`` alike to run on Dask.
This module imports nothing of uet at run time, so the group can set the slot for every
command without loading the run engine.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from uet_git.engine.events import Observer
    from uet_git.gitrepo.repo import Repo
    from uet_git.spec.models import Config, ExecutorConfig


class Backend(Protocol):
    """What a run uses of ``commands/executor.py`` (the module satisfies it)."""

    def check_executor(self, repo: Repo, cfg: ExecutorConfig) -> None: ...

    def open_executor(self, repo: Repo, run: str, config: Config, observer: Observer) -> Any: ...


BACKEND: ContextVar[Callable[[], Backend] | None] = ContextVar("uet_backend", default=None)
