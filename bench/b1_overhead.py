"""B1 — per-workstream overhead of ``uet run`` against doing it by hand with the git CLI.

N workstreams that each append a line to their own file, acceptance ``true``, on a small
repository (100 files) and a large one (30,000 files, ~200 MB), with 1 and 4 workers. The
baseline (bench/baseline_by_hand.sh) runs in the same process, interleaved with uet's runs.
"""

from __future__ import annotations

import subprocess
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
)


@dataclass(frozen=True)
class Scenario:
    shape: RepoShape
    n: int  # workstreams per uet run
    n_hand: int  # workstreams per by-hand run (fewer on the large repository: ~5 s each)
    runs: int
    large: bool


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        # The 30,000-file repository takes ~10 s to generate; CI uses a 3,000-file stand-in.
        return [Scenario(SMALL, 6, 6, 2, False), Scenario(MEDIUM, 3, 1, 1, True)]
    return [Scenario(SMALL, 30, 30, 5, False), Scenario(LARGE, 40, 6, 5, True)]


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
        label = f"{sc.shape.name} ({files:,} files, {size / 1e6:.0f} MB)"
        stats = measure_interleaved(
            {
                "by hand": lambda: (by_hand(repo, sc.n_hand, wd / "scratch"), None)[1],
                "uet, 1 worker": lambda: uet_once(repo, ws_dir, 1, sc.n),
                "uet, 4 workers": lambda: uet_once(repo, ws_dir, 4, sc.n),
            },
            sc.runs,
        )
        left = git(repo, "worktree", "list", "--porcelain").count("worktree ") - 1
        base = stats["by hand"]
        base_ws = base.median / sc.n_hand
        table.add(label, sc.n_hand, "by hand (git CLI)", base.fmt(), _per_ws(base, sc.n_hand),
                  "1.00", "", "")
        for name in ("uet, 1 worker", "uet, 4 workers"):
            st = stats[name]
            per_ws = st.median / sc.n
            r = ratio(per_ws, base_ws)
            if not sc.large:
                if name.endswith("1 worker"):
                    target, met = "<= 1.5", r <= 1.5
                else:
                    target, met = "< 1.0", r < 1.0
            else:
                target, met = "<= 0.05 (20x) and <= 0.5 s/ws", r <= 0.05 and per_ws <= 0.5
            table.add(label, sc.n, name, st.fmt(), _per_ws(st, sc.n), f"{r:.3f}", target,
                      verdict(met))
        notes.append(
            f"{sc.shape.name}: {sc.runs} runs per variant, interleaved; {left} uet worktree(s) "
            "still registered after the runs."
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
