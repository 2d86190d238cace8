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
    n: int
    runs: int
    large: bool


def scenarios(quick: bool) -> list[Scenario]:
    if quick:
        # The 30,000-file repository takes ~10 s to generate; CI uses a 3,000-file stand-in.
        return [Scenario(SMALL, 8, 2, False), Scenario(MEDIUM, 4, 1, True)]
    return [Scenario(SMALL, 30, 5, False), Scenario(LARGE, 8, 5, True)]


def by_hand(repo: Path, n: int, scratch: Path) -> str:
    """Run the by-hand baseline; returns its integration commit."""
    proc = subprocess.run(
        ["bash", str(BENCH_DIR / "baseline_by_hand.sh"), str(repo), str(n), str(scratch)],
        check=True, env=bench_env(), stdout=subprocess.PIPE, text=True,
    )
    return proc.stdout.strip()


def ledger_runs(repo: Path) -> set[str]:
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/ledger/")
    return {line.rsplit("/", 1)[-1] for line in out.splitlines() if line}


def uet_once(repo: Path, ws_dir: Path, jobs: int, n: int) -> float:
    before = ledger_runs(repo)
    res = run_uet(uet_run_args(ws_dir, jobs, "--json"), cwd=repo)
    new = ledger_runs(repo) - before
    if len(new) != 1:
        raise RuntimeError(f"expected one new run in {repo}, found {sorted(new)}")
    run = new.pop()
    committed = git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/committed/{run}/")
    got = len(committed.splitlines())
    if got != n:
        raise RuntimeError(f"uet run {run}: {got} of {n} workstreams committed\n{res.stdout}")
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
                "by hand": lambda: (by_hand(repo, sc.n, wd / "scratch"), None)[1],
                "uet, 1 worker": lambda: uet_once(repo, ws_dir, 1, sc.n),
                "uet, 4 workers": lambda: uet_once(repo, ws_dir, 4, sc.n),
            },
            sc.runs,
        )
        left = git(repo, "worktree", "list", "--porcelain").count("worktree ") - 1
        base = stats["by hand"]
        table.add(label, sc.n, "by hand (git CLI)", base.fmt(), _per_ws(base, sc.n), "1.00", "",
                  "")
        for name in ("uet, 1 worker", "uet, 4 workers"):
            st = stats[name]
            r = ratio(st.median, base.median)
            per_ws = st.median / sc.n
            if not sc.large:
                if name.endswith("1 worker"):
                    target, met = "<= 1.5", r <= 1.5
                else:
                    target, met = "< 1.0", r < 1.0
            else:
                target, met = "<= 0.05 and <= 0.5 s/ws", r <= 0.05 and per_ws <= 0.5
            table.add(label, sc.n, name, st.fmt(), _per_ws(st, sc.n), f"{r:.2f}", target,
                      verdict(met))
        notes.append(
            f"{sc.shape.name}: {sc.runs} runs per variant, interleaved; {left} uet worktree(s) "
            "left registered after the runs (a pool kept between runs is reused by the next run)."
        )
    finally:
        cleanup(wd)


def _per_ws(st: Stats, n: int) -> str:
    return f"{st.median / n * 1000:.0f} ms"


def main(quick: bool = False) -> list[Table]:
    table = Table(
        "B1 per-workstream overhead: uet run vs by hand",
        ["repository", "ws", "variant", "wall median (min-max)", "per ws", "ratio to by hand",
         "target", "verdict"],
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
