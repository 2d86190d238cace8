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

import contextlib
import dataclasses
import os
import subprocess
import sys
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


# --------------------------------------------------------------------------- fixed cost
# ``python -m bench.b1_overhead --fixed-cost [--against TREE]``: the per-workstream fixed costs
# of the tamper guard and the pool's sweep, for this tree and (``--against``, e.g. a
# ``git worktree add /tmp/old REV``) another, each measured in a subprocess that imports that
# tree's uet_git, interleaved.

_GUARD_CODE = r"""
import json, statistics, sys, time
from pathlib import Path
from uet_git.engine.guard import TamperGuard
from uet_git.gitrepo import tamper
from uet_git.gitrepo.repo import Repo
repo, wt, n = Repo.open(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
def med(f):
    xs = []
    for _ in range(n):
        t = time.perf_counter(); f(); xs.append(time.perf_counter() - t)
    return statistics.median(xs) * 1000
def cycle(g):
    g.enter("a", wt); g.leave("a")
print(json.dumps({"snapshot": med(lambda: tamper.snapshot(repo)),
                  "sandboxed": med(lambda: cycle(TamperGuard(repo, sandboxed=True))),
                  "none": med(lambda: cycle(TamperGuard(repo, sandboxed=False)))}))
"""

_SWEEP_CODE = r"""
import json, statistics, sys, time
from uet_git.workers.procfs import processes_under
xs = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter(); processes_under(sys.argv[1]); xs.append(time.perf_counter() - t)
print(json.dumps({"sweep": statistics.median(xs) * 1000}))
"""

# K processes with F open files each, in a live session no tool started (a shell's jobs, like
# a test runner's workers): init -> A (waits) -> B (setsid, waits) -> K workers.
_HOLDERS_CODE = r"""
import os, sys, time
k, f, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if os.fork():
    os._exit(0)
if os.fork():
    os.wait(); os._exit(0)
os.setsid()
for i in range(k):
    if os.fork() == 0:
        fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(f)]
        open(f"{ready}.{i}", "w").write(str(os.getpid()))
        time.sleep(3600)
        os._exit(0)
open(f"{ready}.sid", "w").write(str(os.getpid()))
os.wait(); os._exit(0)
"""


def _tree_env(tree: Path | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = bench_env(extra)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    return env


def _py(tree: Path | None, code: str, *args: str) -> dict[str, float]:
    import json  # only here: the fixed-cost section's subprocess answers

    # In the tree's own directory: ``-c`` puts the cwd first on sys.path.
    out = subprocess.run([sys.executable, "-c", code, *args], env=_tree_env(tree), check=True,
                         cwd=tree, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _set_mode(repo: Path, mode: str) -> None:
    toml = repo / "uet.toml"
    if not toml.exists() or f'"{mode}"' not in toml.read_text():
        toml.write_text(f'[sandbox]\nmode = "{mode}"\n')
        git(repo, "add", "uet.toml")
        git(repo, "commit", "-q", "-m", f"sandbox mode {mode}")


def _uet(tree: Path | None, repo: Path, ws_dir: Path, env: dict[str, str] | None = None
         ) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "uet_git", *uet_run_args(ws_dir, 1)], cwd=repo,
                   env=_tree_env(tree, env), check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _git_processes(tree: Path | None, repo: Path, ws_dir: Path, mode: str,
                   scratch: Path) -> tuple[int, dict[str, int]]:
    """git processes one ``uet run`` started (GIT_TRACE2_EVENT), and the count per command."""
    import json  # only here, as above

    trace = scratch / f"trace-{time.monotonic_ns()}.json"
    _set_mode(repo, mode)
    _uet(tree, repo, ws_dir, {"GIT_TRACE2_EVENT": str(trace)})
    per: dict[str, int] = {}
    for line in trace.read_text().splitlines() if trace.exists() else []:
        ev = json.loads(line)
        if ev.get("event") != "start":
            continue
        argv = ev.get("argv", [])[1:]
        while len(argv) >= 2 and argv[0] == "-c":
            argv = argv[2:]
        name = argv[0] if argv else "?"
        per[name] = per.get(name, 0) + 1
    return sum(per.values()), per


def _start_holders(k: int, f: int, scratch: Path) -> list[int]:
    ready = scratch / "holder"
    subprocess.run([sys.executable, "-c", _HOLDERS_CODE, str(k), str(f), str(ready)],
                   check=True)
    end = time.monotonic() + 30
    files = [Path(f"{ready}.{i}") for i in range(k)] + [Path(f"{ready}.sid")]
    while not all(p.exists() and p.read_text() for p in files) and time.monotonic() < end:
        time.sleep(0.05)
    return [int(p.read_text()) for p in files if p.exists() and p.read_text()]


def _slope(table: Table, trees: list[tuple[str, Path | None]], repo: Path, wd: Path, runs: int,
           what: str) -> None:
    """uet's cost of one more workstream (runs of 12 and 2, back to back), trees interleaved."""
    _set_mode(repo, "bwrap")
    slopes = measure_interleaved({
        name: (lambda tree=tree: (_uet(tree, repo, wd / "ws12")
                                  - _uet(tree, repo, wd / "ws2")) / 10)
        for name, tree in trees}, runs)
    for name, _ in trees:
        table.add(f"uet run, 1 worker, bwrap: one more workstream{what}", name,
                  slopes[name].fmt("ms", 0, 1000), runs)


def fixed_cost(against: Path | None, runs: int = 3) -> Table:
    import signal  # only here: stopping the fd holders

    table = Table("B1 fixed cost per workstream: tamper guard and the pool's sweep",
                  ["measure", "tree", "median", "runs"])
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if against is not None:
        trees.insert(0, (f"{against}", against))
    wd = workdir("b1-fixed")
    holders: list[int] = []
    try:
        repo = make_repo(SMALL, wd / "repo")
        for n in (2, 12):
            write_workstreams(wd / f"ws{n}", independent_specs(n))
        wt = wd / "wt"
        git(repo, "worktree", "add", "-q", "--detach", str(wt))
        _slope(table, trees, repo, wd, runs, "")
        ops = "".join(f"create refs/uet/bench/r/ws{i} HEAD\n" for i in range(10_000))
        git(repo, "update-ref", "--stdin", input=ops.encode())
        _slope(table, trees, repo, wd, runs, ", 10,000 more loose refs under refs/uet/")
        for mode in ("bwrap", "none"):
            for name, tree in trees:
                counts = [_git_processes(tree, repo, wd / f"ws{n}", mode, wd)
                          for n in (2, 12)]
                per = (counts[1][0] - counts[0][0]) / 10
                guard = sum(counts[1][1].get(c, 0) - counts[0][1].get(c, 0)
                            for c in ("for-each-ref", "config")) / 10
                table.add(f"git processes per workstream, [sandbox] mode = {mode}", name,
                          f"{per:.1f} (for-each-ref + config: {guard:.1f})", 1)
        for name, tree in trees:
            ms = _py(tree, _GUARD_CODE, str(repo), str(wt), str(15 * runs))
            table.add("tamper snapshot, 10,000 loose refs under refs/uet/", name,
                      f"{ms['snapshot']:.2f} ms", 15 * runs)
            table.add("guard enter + leave, sandboxed", name, f"{ms['sandboxed']:.2f} ms",
                      15 * runs)
            table.add("guard enter + leave, mode none", name, f"{ms['none']:.2f} ms",
                      15 * runs)
        for k in (0, 8):
            if k:
                holders = _start_holders(k, 300, wd)
            nproc = sum(1 for p in os.listdir("/proc") if p.isdigit())
            for name, tree in trees:
                ms = _py(tree, _SWEEP_CODE, str(wt), str(5 * runs))
                table.add(f"sweep (processes_under), {nproc} processes, {k} of them holding "
                          "300 open files each in another session", name,
                          f"{ms['sweep']:.1f} ms", 5 * runs)
        table.notes.append(f"load average {os.getloadavg()[0]:.1f} at the end; small "
                           "repository, trivial tools, acceptance `true`, `--land never`, "
                           "1 worker; per workstream = (run of 12 - run of 2) / 10.")
    finally:
        for pid in holders:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cleanup(wd)
    return emit(table)


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


if __name__ == "__main__":
    import argparse  # only here: the fixed-cost section run on its own

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed-cost", action="store_true", help="only the guard/sweep costs")
    ap.add_argument("--against", type=Path, help="another tree (its uet_git) to compare")
    ns = ap.parse_args()
    if ns.fixed_cost:
        fixed_cost(ns.against)
    else:
        main()
