"""B5 — verification-bound runs: the speculative queue against the one-at-a-time integrator.

16 independent workstreams, tool ``sleep 1`` (then an append to the workstream's own file),
acceptance ``sleep 1``, ``uet run --jobs 4``; and the same with a 1-in-8 failing patch (its
acceptance fails on any tree holding the first workstream's file: alone it passes, integrated it
fails, so the queue's failure path runs: suspect, flake check, quarantine). Variants, interleaved
in one run: ``[verify] window = 1`` (the one-at-a-time integrator) and the default (the
speculative queue, ``window = "auto"``). ``[verify] batch`` is not built.

The bound is ``max(critical path, total work / jobs)`` where total work counts each tool run and
each verification the gate needs: one per candidate, plus the flake check of each failing patch
(critical path: tool + verification, + the flake check for a failing patch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    SMALL,
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


def specs(p: Params, *, failing: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    first = f"bench-ws/{ws_id(1)}.txt"
    for i in range(1, p.n + 1):
        acc = f"sleep {p.acceptance}"
        if failing and i % 8 == 0:
            acc += f"; test ! -e {first}"  # fails once the first workstream is integrated
        out.append({"id": ws_id(i), "tool": "shell", "command": append_tool(ws_id(i), p.tool),
                    "acceptance": [acc]})
    return out


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


def scenario(p: Params, wd: Path, *, failing: bool) -> Table:
    fails = p.n // 8 if failing else 0
    label = "1-in-8 failing" if failing else "all pass"
    ws_dir = write_workstreams(wd / f"ws-{label[:3]}", specs(p, failing=failing))
    repos = {"window 1": repo_with(wd, f"w1-{label[:3]}", "[verify]\nwindow = 1\n"),
             "speculative": repo_with(wd, f"spec-{label[:3]}", "")}
    seen: dict[str, list[int]] = {k: [] for k in repos}

    def one(name: str) -> float:
        res = run_uet(uet_run_args(ws_dir, JOBS, "--json"), cwd=repos[name],
                      expect=None if failing else p.n)
        seen[name].append(res.committed())
        return res.wall

    stats = measure_interleaved({k: (lambda k=k: one(k)) for k in repos}, p.runs)
    b = bound(p, fails)
    w1, spec = stats["window 1"].median, stats["speculative"].median
    table = Table(f"B5 verification-bound: {p.n} independent workstreams, {label}, {JOBS} jobs",
                  ["variant", "wall median (min-max)", "committed", "x bound", "target",
                   "verdict"])
    table.add("bound", f"{b:.2f} s", p.n - fails, "1.00", "", "")
    table.add("window 1", stats["window 1"].fmt(), _counts(seen["window 1"]),
              f"{ratio(w1, b):.2f}", "", "")
    table.add("speculative (default)", stats["speculative"].fmt(),
              _counts(seen["speculative"]), f"{ratio(spec, b):.2f}", "<= 1.2 x bound",
              verdict(spec <= 1.2 * b))
    table.add("window 1 / speculative", "", "", f"{ratio(w1, spec):.2f}x faster", ">= 2x",
              verdict(ratio(w1, spec) >= 2.0))
    table.add("batch", "not built", "", "", "", "")
    table.notes += [
        f"tool `sleep {p.tool}` + append, acceptance `sleep {p.acceptance}`"
        + (f" (every 8th: also `test ! -e bench-ws/{ws_id(1)}.txt`)" if failing else "")
        + f"; {p.runs} run(s) per variant, interleaved; `uet run --jobs {JOBS} --land never "
        "--json`, wall time of the whole process.",
        f"bound = max(critical path, total work / {JOBS}); total work = {p.n} tools + "
        f"{p.n + fails} verifications (one per candidate"
        + (f", + {fails} flake checks" if fails else "") + ").",
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
        tables = [emit(scenario(p, wd, failing=False)), emit(scenario(p, wd, failing=True))]
    finally:
        cleanup(wd)
    if quick:
        for t in tables:
            t.notes.append("--quick: 8 workstreams of 0.2 s; figures are a smoke test.")
    return tables


if __name__ == "__main__":
    main()
