"""One Dask ``LocalCluster(processes=True)`` on 127.0.0.1 per test process, shared by every
distributed test module (starting one costs seconds): ``shared_cluster`` starts it on first use
(a module's ``cluster`` fixture calls it) and closes it after the last test using a fixture
named ``cluster`` (conftest's ``CLOSE_WHEN_UNUSED``; conftest's ``ONE_WORKER`` runs the modules
one after another in one process), at the latest when the process exits. Its worker
processes take the git identity the tests use and a cache of their own (each worker machine's
mirror and worktrees)."""

from __future__ import annotations

import atexit
import importlib.util
import os
import signal
import subprocess as sp
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLOSE_WHEN_UNUSED, GIT_ENV
from tests.e2e.helpers import run

_shared: dict[str, Any] = {}

# The Dask modules skip without distributed, found without importing it: collecting them on
# every xdist worker would import it on each (most of a second), where only the one worker
# running them (tests/conftest.py ONE_WORKER) uses it.
needs_distributed = pytest.mark.skipif(
    importlib.util.find_spec("distributed") is None,
    reason="the distributed executor's tests need uet-git[distributed]")

# The cluster's own clockwork, none of which a test looks at: worker processes forked from a
# server that imported distributed once (a worker a test kills is replaced without a new
# interpreter's imports), no statistical profiler sampling each worker every 10 ms, and the
# event-loop watchdog and system/memory monitors ticking seconds apart instead of 20-500 ms.
# Each worker is still a process of its own, and a killed one is restarted by its nanny.
QUIET_CLUSTER = {
    "distributed.worker.multiprocessing-method": "forkserver",
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}
WORKER_MODULES = ("uet_git.engine.remotejob", "uet_git.engine.remoteverify")


def shared_cluster(factory: pytest.TempPathFactory) -> Any:
    """This process's cluster (its workers' cache made by ``factory`` on first use)."""
    if "cluster" not in _shared:
        cache = factory.mktemp("worker-cache")
        # why lazy: distributed is optional; test modules skip without it before this runs
        import dask
        import distributed

        # A coordinator the tests kill runs in a child forked from this process: Dask's one
        # offload thread is not in it, only the executor that believes it has that thread,
        # so the child gets a fresh executor that starts its own (for a message of 10 MiB
        # and more, the only ones offloaded).
        if not _shared.get("atfork"):
            os.register_at_fork(after_in_child=_fresh_offload_executor)
            _shared["atfork"] = True
        # Set for good, not in a `with`: the nannies read it again at each worker restart,
        # and pass it on to their workers.
        dask.config.set(QUIET_CLUSTER)
        # Dask names the forkserver's imports on its first call; the modules of uet's jobs
        # join them, so a worker (and each replacement) starts with them loaded.
        distributed.utils.get_mp_context().set_forkserver_preload(
            ["distributed", *WORKER_MODULES])
        # The nannies run in this process: a worker they restart (a test kills one) takes
        # this process's environment of that moment, so the variables go to every start.
        _shared["cluster"] = distributed.LocalCluster(
            processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=":0", silence_logs=50,
            env={**GIT_ENV, "UET_WORKER_CACHE": str(cache)})
        _shared["cache"] = cache
        if not _shared.get("atexit"):
            _shared["atexit"] = atexit.register(close_shared_cluster)
        CLOSE_WHEN_UNUSED["cluster"] = close_shared_cluster
    return _shared["cluster"]


def _fresh_offload_executor() -> None:
    # why lazy: distributed is optional; only registered once the cluster imported it
    import distributed.utils

    distributed.utils._offload_executor = ThreadPoolExecutor(
        max_workers=1, thread_name_prefix="Dask-Offload")


def close_shared_cluster() -> None:
    cluster = _shared.pop("cluster", None)
    if cluster is not None:
        cluster.close()


def worker_cache() -> Path:
    """Where the shared cluster's workers keep their mirrors and worktrees."""
    return Path(_shared["cache"])


def address(cluster: Any) -> str:
    return "dask://" + cluster.scheduler_address.removeprefix("tcp://")


def with_workers(cluster: Any, n: int = 2, timeout: float = 240) -> Any:
    """``cluster`` once it has ``n`` workers again (a test before may have killed one: its
    nanny restarts it, in seconds, or a minute and more on a machine at a load of 30). The
    tests that kill a worker come last in their modules, so the others seldom wait."""
    # why lazy: distributed is optional; test modules skip without it before this runs
    import distributed

    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=timeout)
    return cluster


def client_of(cluster: Any) -> Any:
    """A client of ``cluster``, not the process's default one (the caller closes it)."""
    # why lazy: distributed is optional; test modules skip without it before this runs
    import distributed

    return distributed.Client(cluster.scheduler_address, set_as_default=False)


def alive(pid: int) -> bool:
    """``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


def run_killing_the_worker(repo: Path, cluster: Any, pid_file: Path, what: str,
                           timeout: float) -> sp.CompletedProcess[str]:
    """``uet run`` on ``cluster`` while a thread waits (``timeout`` s) for the ``what``'s pid in
    ``pid_file``, SIGKILLs the Dask worker process that started it and waits for the sweep of
    its replacement to kill it; asserts it was swept."""
    seen: dict[str, Any] = {}

    def kill_the_worker() -> None:
        try:
            wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), timeout,
                     f"the {what}")
            pid = int(pid_file.read_text())
            os.kill(parent_of(pid), signal.SIGKILL)  # the Dask worker process that started it
            # a worker process starts in seconds, but in tens of them on a loaded machine
            wait_for(lambda: not alive(pid), 90, f"the dead worker's {what} to be swept")
            seen["swept"] = pid
        except BaseException as exc:
            seen["error"] = exc

    killer = threading.Thread(target=kill_the_worker, name="test-killer")
    killer.start()
    try:
        proc = run(repo, "run", "--executor", address(cluster))
    finally:
        killer.join(120)
    assert "error" not in seen and "swept" in seen, seen
    return proc
