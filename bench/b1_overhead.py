"""B1 — per-workstream overhead of ``uet run`` against doing it by hand with the git CLI.

N workstreams that each append a line to their own file, acceptance ``true``, on a small
repository (100 files) and a large one (30,000 files, ~200 MB), with 1 and 4 workers. The
baseline (bench/baseline_by_hand.sh) runs in the same process, interleaved with uet's runs.

Targets (issue 11): small, 1 worker <= 1.0x by hand per workstream; 4 workers never slower
than 1; the marginal cost of one more workstream with 1 worker (the slope between a run of
N/6 and one of N workstreams, so uet's fixed start-up is not counted) <= 15 ms beyond the
tool's own time (the same command run alone with ``sh -c``); large, 4 workers <= 0.5 s per
workstream. uet keeps its worktrees between runs (the default): the first of the interleaved
runs creates them, the others reset them.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BENCH_DIR,
    LARGE,
    MEDIUM,
    PROBLEMS,
    SMALL,
    RepoShape,
    Stats,
    Table,
    append_tool,
    bench_env,
    cleanup,
    emit,
    git,
    independent_specs,
    make_repo,
    measure_interleaved,
    ratio,
    repo_size,
    run_uet,
    uet_run_args,
    verdict,
    workdir,
    write_workstreams,
    ws_id,
)


@dataclass(frozen=True)
class Scenario:
    shape: RepoShape
    n: int  # workstreams per uet run
    n_hand: int  # workstreams per by-hand run (fewer on the large repository: ~5 s each)
    runs: int
    large: bool
    n_slope: int = 0  # a second, smaller uet run for the marginal cost (0: none)


def scenarios(quick: bool) -> list[Scenario]:
    """``UET_BENCH_B1_SHAPES=small`` (or ``large``) runs one repository only and
    ``UET_BENCH_RUNS=N`` sets the runs per variant: on a loaded shared machine the full B1
    (~10 min idle) does not finish in a useful time."""
    chosen = [s for s in os.environ.get("UET_BENCH_B1_SHAPES", "").split(",") if s]
    runs = int(os.environ.get("UET_BENCH_RUNS", "0") or 0)
    out = [sc for sc in _scenarios(quick) if not chosen or sc.shape.name in chosen]
    return [dataclasses.replace(sc, runs=runs) if runs else sc for sc in out]


def _scenarios(quick: bool) -> list[Scenario]:
    if quick:
        # The 30,000-file repository takes ~10 s to generate; CI uses a 3,000-file stand-in.
        return [Scenario(SMALL, 6, 6, 2, False, 2), Scenario(MEDIUM, 3, 1, 1, True)]
    return [Scenario(SMALL, 30, 30, 5, False, 5), Scenario(LARGE, 40, 6, 5, True)]


def tool_alone(scratch: Path, n: int) -> float:
    """Seconds per workstream of the tool itself: its command through ``sh -c``, no git."""
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        subprocess.run(["sh", "-c", append_tool(ws_id(i))], cwd=scratch, check=True)
    return (time.perf_counter() - t0) / n


def by_hand(repo: Path, n: int, scratch: Path) -> str:
    """Run the by-hand baseline; returns its integration commit."""
    proc = subprocess.run(
        ["bash", str(BENCH_DIR / "baseline_by_hand.sh"), str(repo), str(n), str(scratch)],
        check=True, env=bench_env(), stdout=subprocess.PIPE, text=True,
    )
    return proc.stdout.strip()


def uet_once(repo: Path, ws_dir: Path, jobs: int, n: int) -> float:
    res = run_uet(uet_run_args(ws_dir, jobs, "--json"), cwd=repo, expect=n)
    run = str(res.summary.get("run", ""))
    committed = git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/committed/{run}/")
    if run and len(committed.splitlines()) != res.committed():
        PROBLEMS.append(f"B1 run {run}: the summary and refs/uet/committed/ disagree")
    return res.wall


def run_scenario(sc: Scenario, table: Table, notes: list[str]) -> None:
    wd = workdir("b1")
    try:
        repo = make_repo(sc.shape, wd / "repo")
        files, size = repo_size(repo)
        ws_dir = write_workstreams(wd / "workstreams", independent_specs(sc.n))
        small_dir = write_workstreams(wd / "workstreams-small", independent_specs(sc.n_slope))
        label = f"{sc.shape.name} ({files:,} files, {size / 1e6:.0f} MB)"
        variants = {
            "by hand": lambda: (by_hand(repo, sc.n_hand, wd / "scratch"), None)[1],
            "uet, 1 worker": lambda: uet_once(repo, ws_dir, 1, sc.n),
            "uet, 4 workers": lambda: uet_once(repo, ws_dir, 4, sc.n),
        }
        if sc.n_slope:
            variants["uet, 1 worker, fewer"] = lambda: uet_once(repo, small_dir, 1, sc.n_slope)
            variants["tool alone"] = lambda: tool_alone(wd / "tool-alone", sc.n) * sc.n
        stats = measure_interleaved(variants, sc.runs)
        left = git(repo, "worktree", "list", "--porcelain").count("worktree ") - 1
        base = stats["by hand"]
        base_ws = base.median / sc.n_hand
        table.add(label, sc.n_hand, "by hand (git CLI)", base.fmt(), _per_ws(base, sc.n_hand),
                  "1.00", "", "")
        for name in ("uet, 1 worker", "uet, 4 workers"):
            st = stats[name]
            per_ws = st.median / sc.n
            r = ratio(per_ws, base_ws)
            one = stats["uet, 1 worker"].median
            if not sc.large:
                if name.endswith("1 worker"):
                    target, met = "<= 1.0", r <= 1.0
                else:
                    target, met = f"<= 1 worker (now {st.median / one:.2f}x)", st.median <= one
            else:
                target, met = "<= 0.5 s/ws", per_ws <= 0.5
                if name.endswith("1 worker"):
                    target, met = "", True
            table.add(label, sc.n, name, st.fmt(), _per_ws(st, sc.n), f"{r:.3f}", target,
                      verdict(met) if target else "")
        if sc.n_slope:
            few, tool = stats["uet, 1 worker, fewer"], stats["tool alone"]
            slope = (stats["uet, 1 worker"].median - few.median) / (sc.n - sc.n_slope)
            tool_ws = tool.median / sc.n
            over = slope - tool_ws
            table.add(label, f"{sc.n_slope} vs {sc.n}", "uet, 1 worker: one more workstream",
                      f"{slope * 1000:.1f} ms (tool alone {tool_ws * 1000:.1f} ms)",
                      f"+{over * 1000:.1f} ms", "", "<= 15 ms beyond the tool",
                      verdict(over <= 0.015))
            start = stats["uet, 1 worker"].median - slope * sc.n
            notes.append(f"{sc.shape.name}: uet's fixed cost per run (start-up, ledger create "
                         f"and finish, from the same slope) {start * 1000:.0f} ms.")
        notes.append(
            f"{sc.shape.name}: {sc.runs} runs per variant, interleaved; {left} uet worktree(s) "
            "kept registered after the runs (locked, for the next run)."
        )
        if sc.n != sc.n_hand:
            notes.append(
                f"{sc.shape.name}: by hand runs {sc.n_hand} workstreams (each costs a full "
                f"worktree add/remove), uet runs {sc.n}; the ratio compares time per workstream.")
    finally:
        cleanup(wd)


def _per_ws(st: Stats, n: int) -> str:
    return f"{st.median / n * 1000:.0f} ms"


def main(quick: bool = False) -> list[Table]:
    table = Table(
        "B1 per-workstream overhead: uet run vs by hand",
        ["repository", "ws", "variant", "wall median (min-max)", "per ws",
         "per-ws ratio to by hand", "target", "verdict"],
    )
    notes: list[str] = []
    for sc in scenarios(quick):
        run_scenario(sc, table, notes)
    table.notes.extend(notes)
    table.notes.append(
        "each workstream appends a line to its own file; uet runs acceptance `true` in the "
        "worker and records every transition in the ledger; `--land never`, `--json`."
    )
    if quick:
        table.notes.append("--quick: 'large' is a 3,000-file stand-in; figures are a smoke test.")
    return [emit(table)]
