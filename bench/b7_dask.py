"""B7 — the distributed executor's cost per job: ``uet run`` of N trivial independent
workstreams with local threads and with ``--executor dask://`` on a ``LocalCluster`` (one worker
process, one thread, on 127.0.0.1; the repository itself as the workers' remote), side by side
and interleaved in one run (local 1, local N, dask 1, dask N, local 1, ...).

One job at a time (``--jobs 1``), so a run's wall time grows by one job's time per workstream:
the cost of a job is ``(T(N) - T(1)) / (N - 1)``, taken within each round (the two runs of a
pair see the same machine), which also removes each process's fixed start-up (importing
``distributed``, connecting, the first job's mirror). The Dask job's extra cost is its
fetch of the base into the worker's mirror, the worker's worktree reset, the inbox push, the
coordinator's fetch and the round trips through the scheduler. The second table does the same
with a pre-merge hook in ``uet.toml``, so every candidate is judged: locally in the pool, with
Dask as one more job on the worker (``engine/remoteverify.py``).

    python bench/b7_dask.py [--quick]
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    BENCH_GIT_ENV,
    RepoShape,
    Stats,
    Table,
    cleanup,
    emit,
    git,
    independent_specs,
    make_repo,
    run_uet,
    uet_run_args,
    workdir,
    write_workstreams,
)

SHAPE = RepoShape("b7", files=200, mean_bytes=300)


HOOK_CONFIG = '[hooks]\npre-merge = ["true"]\n'  # a check on every candidate


def main(quick: bool = False) -> list[Table]:
    rounds, n = (3, 6) if quick else (7, 12)
    cols = ["mode", "run of 1 (s)", f"run of {n} (s)", "per workstream (ms)",
            "per workstream - local (ms, pairwise)", "ratio to local"]
    jobs = Table("B7 distributed executor: cost per job, Dask (LocalCluster, 1 worker) vs "
                 "local threads, --jobs 1", cols)
    checks = Table("B7 distributed executor: cost per job and candidate check (a pre-merge "
                   "hook on every candidate: judged on the worker with Dask), --jobs 1", cols)
    try:
        # why lazy: distributed is an optional extra; without it B7 says so and is skipped
        import distributed
    except ImportError as exc:
        jobs.notes.append(f"skipped: distributed is not installed ({exc})")
        return [emit(jobs)]
    wd = workdir("b7")
    saved = {k: os.environ.get(k) for k in ("UET_WORKER_CACHE", *BENCH_GIT_ENV)}
    os.environ.update({"UET_WORKER_CACHE": str(wd / "worker-cache"), **BENCH_GIT_ENV})
    cluster = None
    try:
        cluster = distributed.LocalCluster(processes=True, n_workers=1, threads_per_worker=1,
                                           host="127.0.0.1", dashboard_address=":0",
                                           silence_logs=50)
        address = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
        repos = {"jobs": make_repo(SHAPE, wd / "repo"),
                 "checks": make_repo(SHAPE, wd / "repo-hooks")}
        (repos["checks"] / "uet.toml").write_text(HOOK_CONFIG)
        git(repos["checks"], "add", "uet.toml")
        git(repos["checks"], "commit", "-q", "-m", "a pre-merge hook")
        dirs = {k: write_workstreams(wd / f"ws-{k}", independent_specs(k, acceptance=()))
                for k in (1, n)}
        modes = {"local": (), "dask": ("--executor", address)}

        def one(which: str, mode: str, k: int) -> float:
            args = uet_run_args(dirs[k], 1, "--json", "--quiet", *modes[mode])
            return run_uet(args, cwd=repos[which], expect=k).wall

        for which in repos:  # warm-up: imports, the worker's mirror and worktree
            for mode in modes:
                one(which, mode, 1)
        walls: dict[tuple[str, str, int], list[float]] = {
            (w, m, k): [] for w in repos for m in modes for k in (1, n)}
        for _ in range(rounds):
            for which in repos:
                for mode in modes:
                    for k in (1, n):
                        walls[(which, mode, k)].append(one(which, mode, k))
        for which, table in (("jobs", jobs), ("checks", checks)):
            per_job = {m: [(big - small) / (n - 1) for small, big in
                           zip(walls[(which, m, 1)], walls[(which, m, n)], strict=True)]
                       for m in modes}
            local = Stats.of(per_job["local"])
            for mode in modes:
                job = Stats.of(per_job[mode])
                extra = Stats.of(d - loc for d, loc in zip(per_job[mode], per_job["local"],
                                                           strict=True))
                table.add(mode, Stats.of(walls[(which, mode, 1)]).fmt("s", 2),
                          Stats.of(walls[(which, mode, n)]).fmt("s", 2),
                          job.fmt("ms", 0, 1000),
                          extra.fmt("ms", 0, 1000) if mode != "local" else "",
                          f"{statistics.median(per_job[mode]) / local.median:.2f}x")
            table.notes.append(
                f"{rounds} interleaved rounds; medians (min-max); per workstream = "
                f"(T({n}) - T(1)) / {n - 1} within a round; each workstream appends a line to "
                "its own file, no acceptance, sandboxed as by default; --land never, so every "
                "round starts from the same base."
                + (" uet.toml has one pre-merge hook (`true`): every candidate is judged, "
                   "with Dask as a second job on the worker (publish, fetch, worktree, hook)."
                   if which == "checks" else ""))
    finally:
        if cluster is not None:
            cluster.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        cleanup(wd)
    return [emit(jobs), emit(checks)]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
