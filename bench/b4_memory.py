"""B4 — scale: N trivial workstreams with 8 workers. Per size: the cost per workstream (wall /
N), the peak RSS of uet's own process, how much ``.git`` grew per workstream, and how long
``uet status RUN`` takes on the finished run. Targets at the largest size against the smallest
(same run): cost per workstream within 1.1x, ``.git`` growth per workstream within 1.1x
(linear), ``uet status`` <= 0.5 s, peak RSS <= 300 MB.

uet runs under a small wrapper (bench/common.py, ``_RSS_WRAPPER``) that executes it in its own
interpreter and reads VmHWM from /proc/self/status at exit: the peak RSS of uet's own
process, not of the benchmark driver.

Sizes: ``--quick`` 20 and 60; default 300 and 1,000; ``UET_BENCH_B4_FULL=1`` 1,000 and 10,000
(the issue's scale target: ~15-30 min on 2 quiet cores); ``UET_BENCH_B4_SIZES=1000,2000,4000``
those sizes (the smallest is the reference), without the scripted-ledger table: a memory
measurement short of the full hour.

A second table times ``uet status`` (text and ``--json``) at 10,000 workstreams in seconds,
without the hour-long run: on a ledger scripted with ``git fast-import`` (bench/b4_ledger.py,
the writer's commits for a trivial workstream, six per workstream), first with no kept fold
(the reader folds every ledger commit once, as after a run killed -9 or fetched from elsewhere)
and then as every later reader, and a run's own first reader after it finished, finds it.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.b4_ledger import build as scripted_ledger
from bench.common import (
    SMALL,
    Stats,
    Table,
    bench_env,
    cleanup,
    emit,
    independent_specs,
    make_repo,
    run_uet,
    uet_run_args,
    verdict,
    workdir,
    write_workstreams,
)

JOBS = 8
RSS_MB = 300.0
STATUS_S = 0.5
FLAT = 1.1  # largest / smallest, per workstream


@dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]
    runs: int
    status_runs: int
    full: bool
    status_table: bool = True


def params(quick: bool) -> Params:
    sizes = os.environ.get("UET_BENCH_B4_SIZES", "").strip()
    if sizes:
        chosen = tuple(sorted(int(n) for n in sizes.split(",") if n.strip()))
        return Params(sizes=chosen, runs=1, status_runs=3 if quick else 11,
                      full=chosen[-1] >= 10_000, status_table=False)
    if quick:
        return Params(sizes=(20, 60), runs=1, status_runs=3, full=False)
    if os.environ.get("UET_BENCH_B4_FULL", "") not in ("", "0"):
        return Params(sizes=(1000, 10_000), runs=1, status_runs=11, full=True)
    return Params(sizes=(300, 1000), runs=1, status_runs=11, full=False)


def du(path: Path) -> int:
    """Bytes used under ``path`` (allocated blocks, as ``du`` counts them)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed while we walk
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def git_dir_size(repo: Path) -> int:
    """``.git`` without uet's kept worktrees (their checkouts are not the ledger's growth)."""
    return du(repo / ".git") - du(repo / ".git" / "uet" / "worktrees")


SCRIPTED = 10_000  # workstreams of the scripted ledger (--quick: 2,000)


def status_time(repo: Path, run: str, runs: int, *extra: str) -> Stats:
    cmd = [sys.executable, "-m", "uet_git", "status", run, *extra]
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=repo, env=bench_env(), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        samples.append(time.perf_counter() - t0)
    return Stats.of(samples)


@dataclass
class Size:
    n: int
    wall: Stats
    rss: Stats
    growth: float  # bytes of .git per workstream
    status: Stats

    @property
    def per_ws(self) -> float:
        return self.wall.median / self.n


def fanned_specs(n: int) -> list[dict[str, object]]:
    """``independent_specs`` with each workstream's file under one of 100 directories
    (``bench-ws/NN/WS.txt``): the integration tree gains a file per workstream, and with one
    flat directory every commit writes that directory's tree again, N entries (at 1,000
    workstreams the integrator's commit rate fell from 11 to 3.6 per second as it filled):
    git's cost of the workload, not uet's per-step cost that B4 is about."""
    specs = independent_specs(n, acceptance=())
    for spec in specs:
        wid = str(spec["id"])
        spec["command"] = (f'mkdir -p bench-ws/{wid[-2:]} && echo "line from {wid}" >> '
                           f"bench-ws/{wid[-2:]}/{wid}.txt")
    return specs


def measure(n: int, p: Params, wd: Path) -> Size:
    ws_dir = write_workstreams(wd / f"ws-{n}", fanned_specs(n))
    walls, rss, growth = [], [], []
    run = ""
    repo = wd
    for i in range(p.runs):
        repo = make_repo(SMALL, wd / f"repo-{n}-{i}")
        before = git_dir_size(repo)
        res = run_uet(uet_run_args(ws_dir, JOBS, "--json"), cwd=repo, measure_rss=True,
                      expect=n)
        if res.peak_rss_kib is None:
            raise RuntimeError("B4: the RSS wrapper reported nothing")
        walls.append(res.wall)
        rss.append(res.peak_rss_kib / 1024)
        growth.append((git_dir_size(repo) - before) / n)
        run = str(res.summary.get("run", ""))
    st = status_time(repo, run, p.status_runs)
    return Size(n, Stats.of(walls), Stats.of(rss), statistics.median(growth), st)


def fold_file(repo: Path, run: str) -> Path:
    return repo / ".git" / "uet" / "cache" / f"{run}.fold.json"


def scripted_status(n: int, p: Params, wd: Path) -> Table:
    """``uet status`` on a scripted ``n``-workstream ledger: without a kept fold, then with."""
    table = Table(f"B4 status: uet status RUN on a scripted {n:,}-workstream ledger",
                  ["workstreams", "ledger commits", "first status (folds the ledger)",
                   "uet status", "uet status --json", "verdict"])
    repo = make_repo(SMALL, wd / "repo-scripted")
    run = scripted_ledger(repo, n)
    commits = n * 6 + 2
    cold = []
    for _ in range(3):
        fold_file(repo, run).unlink(missing_ok=True)
        cold.append(status_time(repo, run, 1).median)
    text = status_time(repo, run, p.status_runs)
    js = status_time(repo, run, p.status_runs, "--json")
    table.add(n, commits, Stats.of(cold).fmt(), text.fmt(), js.fmt(),
              verdict(text.median <= STATUS_S and js.median <= STATUS_S))
    table.notes.append(
        f"target: `uet status RUN` <= {STATUS_S} s (median of {p.status_runs}). States from "
        "the state refs, the rest from the ledger's fold kept in .git/uet/cache/RUN.fold.json "
        "(ledger/fold.py; a finished run leaves it, a reader folds only the commits since). "
        "`first status`: with the kept fold removed (median of 3).")
    return table


def main(quick: bool = False) -> list[Table]:
    p = params(quick)
    table = Table(
        f"B4 scale: N trivial workstreams, {JOBS} workers",
        ["workstreams", "wall", "per ws", "per ws / smallest", ".git growth per ws",
         "growth / smallest", "uet status", "peak RSS of uet", "verdict"],
    )
    wd = workdir("b4")
    try:
        status_table = scripted_status(2000 if quick else SCRIPTED, p, wd) \
            if p.status_table else None
        sizes = [measure(n, p, wd) for n in p.sizes]
    finally:
        cleanup(wd)
    first = sizes[0]
    for s in sizes:
        cost_r = s.per_ws / first.per_ws
        grow_r = s.growth / first.growth if first.growth else float("inf")
        last = s is sizes[-1] and s is not first
        checks = []
        if last:
            checks = [cost_r <= FLAT, grow_r <= FLAT, s.status.median <= STATUS_S,
                      s.rss.max <= RSS_MB]
        table.add(s.n, s.wall.fmt(), f"{s.per_ws * 1000:.1f} ms", f"{cost_r:.2f}",
                  f"{s.growth / 1024:.1f} KiB", f"{grow_r:.2f}", s.status.fmt(),
                  s.rss.fmt("MB", 1), verdict(all(checks)) if last else "")
    table.notes.append(
        f"targets at the largest size: per ws and .git growth per ws <= {FLAT}x the smallest "
        f"size's (same run), `uet status RUN` <= {STATUS_S} s (median of {p.status_runs}), "
        f"peak RSS <= {RSS_MB:.0f} MB. Each workstream appends a line to its own file "
        "(bench-ws/NN/WS.txt, 100 directories), no acceptance; `--land never --json`; a "
        "fresh clone per size; .git growth excludes uet's kept worktrees.")
    if not p.full:
        table.notes.append("sizes reduced (the 10,000-workstream case runs with "
                           "UET_BENCH_B4_FULL=1).")
    return [emit(t) for t in (status_table, table) if t is not None]
