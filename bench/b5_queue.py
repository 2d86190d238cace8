"""B5 — verification-bound runs: the speculative queue against the one-at-a-time integrator.

16 independent workstreams, tool ``sleep 1`` (then an append to the workstream's own file),
acceptance ``sleep 1``, ``uet run --jobs 4``; and the same with a 1-in-8 failing patch (its
acceptance fails on any tree holding the first workstream's file: alone it passes, integrated it
fails, so the queue's failure path runs: suspect, flake check, quarantine). Variants, interleaved
in one run: ``[verify] window = 1`` (the one-at-a-time integrator), the default (the
speculative queue, ``window = "auto"``) and ``[verify] batch = 4`` (bors: 4 patches judged as
one candidate, bisected on a failure). A third scenario, "hook-bound", judges with a pre-merge
hook ``sleep 1`` instead of acceptance (a hook runs on every candidate and never in the worker,
so the worker's run on the queue's tail saves nothing): the case batches are for.

The bound is ``max(critical path, total work / jobs)`` where total work counts each tool run and
each verification the gate needs: one per candidate, plus the flake check of each failing patch
(critical path: tool + verification, + the flake check for a failing patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.b5_events import in_run
from bench.common import (
    SMALL,
    Stats,
    Table,
    append_tool,
    cleanup,
    emit,
    git,
    make_repo,
    measure_interleaved,
    ratio,
    run_uet,
    uet_run_args,
    verdict,
    workdir,
    write_workstreams,
    ws_id,
)

JOBS = 4


@dataclass(frozen=True)
class Params:
    n: int
    tool: float
    acceptance: float
    runs: int


def params(quick: bool) -> Params:
    if quick:
        return Params(n=8, tool=0.2, acceptance=0.2, runs=1)
    return Params(n=16, tool=1.0, acceptance=1.0, runs=3)


BATCH = 4
SCENARIOS = ("all pass", "1-in-8 failing", "hook-bound")


def specs(p: Params, *, failing: bool, hook: bool = False) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    first = f"bench-ws/{ws_id(1)}.txt"
    for i in range(1, p.n + 1):
        acc = f"sleep {p.acceptance}"
        if failing and i % 8 == 0:
            acc += f"; test ! -e {first}"  # fails once the first workstream is integrated
        out.append({"id": ws_id(i), "tool": "shell", "command": append_tool(ws_id(i), p.tool),
                    "acceptance": [] if hook else [acc]})
    return out


def configs(p: Params, *, hook: bool) -> dict[str, str]:
    """The variants' committed uet.toml."""
    hooks = f'[hooks]\npre-merge = ["sleep {p.acceptance}"]\n' if hook else ""
    return {"window 1": "[verify]\nwindow = 1\n" + hooks,
            "speculative": hooks,
            "batch": f"[verify]\nbatch = {BATCH}\n" + hooks}


def bound(p: Params, fails: int) -> float:
    work = p.n * p.tool + (p.n + fails) * p.acceptance
    path = p.tool + p.acceptance * (2 if fails else 1)
    return max(path, work / JOBS)


def repo_with(wd: Path, name: str, config: str) -> Path:
    """The small repository with ``config`` as its committed uet.toml (the verify settings
    are read from the run's base commit)."""
    repo = make_repo(SMALL, wd / name)
    if config:
        (repo / "uet.toml").write_text(config)
        git(repo, "add", "uet.toml")
        git(repo, "commit", "-q", "-m", "uet.toml for the benchmark")
    return repo


def scenario(p: Params, wd: Path, label: str) -> Table:
    failing, hook = label == "1-in-8 failing", label == "hook-bound"
    fails = p.n // 8 if failing else 0
    tag = label[:3]
    ws_dir = write_workstreams(wd / f"ws-{tag}", specs(p, failing=failing, hook=hook))
    repos = {name: repo_with(wd, f"{name[:5].strip()}-{tag}", config)
             for name, config in configs(p, hook=hook).items()}
    seen: dict[str, list[int]] = {k: [] for k in repos}
    inner: dict[str, list[float]] = {k: [] for k in repos}

    def one(name: str) -> float:
        res = run_uet(uet_run_args(ws_dir, JOBS, "--json"), cwd=repos[name],
                      expect=None if failing else p.n, stream_events=True)
        seen[name].append(res.committed())
        inner[name].append(in_run(res))
        return res.wall

    stats = measure_interleaved({k: (lambda k=k: one(k)) for k in repos}, p.runs)
    b = bound(p, fails)
    w1, spec, bat = (stats[k].median for k in ("window 1", "speculative", "batch"))
    i1, ispec, ibat = (Stats.of(inner[k]).median for k in ("window 1", "speculative", "batch"))
    table = Table(f"B5 verification-bound: {p.n} independent workstreams, {label}, {JOBS} jobs",
                  ["variant", "wall median (min-max)", "committed", "x bound",
                   "excl. start-up", "target", "verdict"])
    table.add("bound", f"{b:.2f} s", p.n - fails, "1.00", "", "", "")
    table.add("window 1", stats["window 1"].fmt(), _counts(seen["window 1"]),
              f"{ratio(w1, b):.2f}", f"{ratio(i1, b):.2f}", "", "")
    table.add("speculative (default)", stats["speculative"].fmt(),
              _counts(seen["speculative"]), f"{ratio(spec, b):.2f}", f"{ratio(ispec, b):.2f}",
              "<= 1.2 x bound", verdict(spec <= 1.2 * b))
    table.add("window 1 / speculative", "", "", f"{ratio(w1, spec):.2f}x faster",
              f"{ratio(i1, ispec):.2f}x", ">= 2x", verdict(ratio(w1, spec) >= 2.0))
    table.add(f"batch = {BATCH}", stats["batch"].fmt(), _counts(seen["batch"]),
              f"{ratio(bat, b):.2f}", f"{ratio(ibat, b):.2f}", "", "")
    table.add("speculative / batch", "", "", f"{ratio(spec, bat):.2f}x",
              f"{ratio(ispec, ibat):.2f}x", "", "")
    judge = f"pre-merge hook `sleep {p.acceptance}` (no acceptance)" if hook else \
        f"acceptance `sleep {p.acceptance}`"
    table.notes += [
        f"tool `sleep {p.tool}` + append, {judge}"
        + (f" (every 8th: also `test ! -e bench-ws/{ws_id(1)}.txt`)" if failing else "")
        + f"; {p.runs} run(s) per variant, interleaved; `uet run --jobs {JOBS} --land never "
        "--json`, wall time of the whole process (verdicts); excl. start-up: from the first "
        "tool's start to the process's end.",
        f"bound = max(critical path, total work / {JOBS}); total work = {p.n} tools + "
        f"{p.n + fails} verifications (one per candidate"
        + (f", + {fails} flake checks" if fails else "") + ")"
        + (f"; a batch needs about {p.n // BATCH}, so it may beat this bound" if hook else "")
        + ".",
    ]
    if any(c != p.n - fails for v in seen.values() for c in v):
        table.notes.append(f"WARNING: a run committed other than {p.n - fails} workstreams.")
    return table


def _counts(values: list[int]) -> str:
    return "/".join(str(v) for v in sorted(set(values)))


def main(quick: bool = False) -> list[Table]:
    p = params(quick)
    wd = workdir("b5")
    try:
        tables = [emit(scenario(p, wd, label)) for label in SCENARIOS]
    finally:
        cleanup(wd)
    if quick:
        for t in tables:
            t.notes.append("--quick: 8 workstreams of 0.2 s; figures are a smoke test.")
    return tables


if __name__ == "__main__":
    main()
