"""CH — the seed's headline on its own corpus: the 41 legacy workstreams `uet convert` accepts
(of ../shared/corpus/legacy-workstreams), their dependencies kept, each a ``sleep`` of its
``estimate`` (none of them has one: 1 s) then an append to its own file (its scope), and a
0.5 s acceptance; ``uet run --jobs 4`` against ``--jobs 1``, default settings (the speculative
queue). Target: speed-up >= 4x (the seed's figure), or 4 jobs within 1.1 of the DAG's bound
when the bound allows less; both are printed.

The bound for J jobs is ``max(critical path, total work / J, the ceil(N / J) shortest
workstreams one after the other)``, each workstream costing its tool plus one acceptance run
(the one verification the gate needs when the worker's run on the queue's tail holds). The
third term is what ``total work / J`` leaves out: a workstream runs on one slot from start to
end, and some slot runs at least ceil(N / J) of them. For the corpus (41 workstreams of 1.5 s
on 4 jobs) it is 11 x 1.5 = 16.5 s against 15.375 s of total work / 4, so the DAG's limit on
the speed-up is 61.5 / 16.5 = 3.73x, below the seed's 4x. The table also prints a
zero-overhead simulation of critical-path-first list scheduling of the same DAG (what uet's
scheduler does, at no cost per workstream).
"""

from __future__ import annotations

import heapq
import math
import subprocess
import sys
from pathlib import Path

import yaml

from bench.b5_events import in_run
from bench.common import (
    ROOT,
    SMALL,
    Stats,
    Table,
    bench_env,
    cleanup,
    emit,
    make_repo,
    measure_interleaved,
    ratio,
    run_uet,
    uet_run_args,
    verdict,
    workdir,
    write_workstreams,
)

CORPUS = ROOT.parent / "shared" / "corpus" / "legacy-workstreams"


def converted(wd: Path) -> list[dict[str, object]]:
    """``uet convert`` of the corpus (it exits 2: some files are refused), read back."""
    out = wd / "converted"
    proc = subprocess.run([sys.executable, "-m", "uet_git", "convert", str(CORPUS), "-o",
                           str(out)], cwd=wd, env=bench_env(), capture_output=True, text=True)
    if proc.returncode not in (0, 2) or not out.is_dir():
        raise RuntimeError(f"uet convert failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]


def specs(bundles: list[dict[str, object]], *, scale: float, acceptance: float
          ) -> tuple[list[dict[str, object]], dict[str, float]]:
    out: list[dict[str, object]] = []
    durations: dict[str, float] = {}
    for b in bundles:
        wid = str(b["id"])
        est = b.get("estimate")
        tool = (float(est) if isinstance(est, int | float) else 1.0) * scale
        own = f"bench-ws/{wid}.txt"
        out.append({"id": wid, "depends_on": list(b.get("depends_on") or []), "tool": "shell",
                    "command": f"sleep {tool:g}; mkdir -p bench-ws && echo {wid} >> {own}",
                    "acceptance": [f"sleep {acceptance:g}"], "scope": {"allow": [own]}})
        durations[wid] = tool + acceptance
    return out, durations


def dag_bound(specs_: list[dict[str, object]], durations: dict[str, float],
              jobs: int) -> tuple[float, float]:
    """(critical path, bound for ``jobs``)."""
    deps = {str(s["id"]): [str(d) for d in s["depends_on"]]  # type: ignore[attr-defined]
            for s in specs_}
    finish: dict[str, float] = {}

    def end(w: str) -> float:
        if w not in finish:
            finish[w] = durations[w] + max((end(d) for d in deps[w]), default=0.0)
        return finish[w]

    path = max(end(w) for w in deps)
    # Some slot runs at least ceil(N / jobs) workstreams, whole: at least the shortest ones.
    slots = sum(sorted(durations.values())[:math.ceil(len(deps) / jobs)])
    return path, max(path, sum(durations.values()) / jobs, slots)


def list_schedule(specs_: list[dict[str, object]], durations: dict[str, float],
                  jobs: int) -> float:
    """The makespan of critical-path-first list scheduling with no cost per workstream: each
    free slot takes the ready workstream with the longest remaining path."""
    deps = {str(s["id"]): [str(d) for d in s["depends_on"]]  # type: ignore[attr-defined]
            for s in specs_}
    kids: dict[str, list[str]] = {w: [] for w in deps}
    for w, ds in deps.items():
        for d in ds:
            kids[d].append(w)
    rest: dict[str, float] = {}

    def remaining(w: str) -> float:
        if w not in rest:
            rest[w] = durations[w] + max((remaining(k) for k in kids[w]), default=0.0)
        return rest[w]

    now, done, started = 0.0, set[str](), set[str]()
    running: list[tuple[float, str]] = []
    while len(done) < len(deps):
        ready = sorted((w for w in deps if w not in started and all(d in done for d in deps[w])),
                       key=lambda w: (-remaining(w), w))
        for w in ready[:jobs - len(running)]:
            started.add(w)
            heapq.heappush(running, (now + durations[w], w))
        now, w = heapq.heappop(running)
        done.add(w)
    return now


def main(quick: bool = False) -> list[Table]:
    scale, acceptance, runs = (0.1, 0.05, 1) if quick else (1.0, 0.5, 3)
    wd = workdir("corpus")
    try:
        if not CORPUS.is_dir():
            raise RuntimeError(f"the legacy corpus is not at {CORPUS}")
        bundles = converted(wd)
        wss, durations = specs(bundles, scale=scale, acceptance=acceptance)
        ws_dir = write_workstreams(wd / "ws", wss)
        repo = make_repo(SMALL, wd / "repo")
        n = len(wss)
        inner: dict[int, list[float]] = {1: [], 4: []}

        def one(j: int) -> float:
            res = run_uet(uet_run_args(ws_dir, j, "--json"), cwd=repo, expect=n,
                          stream_events=True)
            inner[j].append(in_run(res))
            return res.wall

        stats = measure_interleaved({j: (lambda j=j: one(j)) for j in (1, 4)}, runs)
        i1, i4 = Stats.of(inner[1]).median, Stats.of(inner[4]).median
        path, bound4 = dag_bound(wss, durations, 4)
        _, bound1 = dag_bound(wss, durations, 1)
        sim4 = list_schedule(wss, durations, 4)
        speedup = ratio(stats[1].median, stats[4].median)
        limit = ratio(bound1, bound4)
        to_bound = ratio(stats[4].median, bound4)
        met = speedup >= 4.0 or (limit < 4.0 and to_bound <= 1.1)
        table = Table(f"CH corpus headline: {n} converted legacy workstreams, 4 jobs vs 1",
                      ["1 job", "4 jobs", "speed-up", "DAG limit (bound 1 / bound 4)",
                       "4 jobs / bound", "excl. start-up: speed-up, / bound", "target",
                       "verdict"])
        table.add(stats[1].fmt(), stats[4].fmt(), f"{speedup:.2f}", f"{limit:.2f}",
                  f"{to_bound:.2f}", f"{ratio(i1, i4):.2f}, {ratio(i4, bound4):.2f}",
                  ">= 4x, or <= 1.1 x bound", verdict(met))
        table.notes += [
            f"critical path {path:.2f} s, total work {sum(durations.values()):.2f} s, bound "
            f"for 4 jobs {bound4:.2f} s (total work / 4: {sum(durations.values()) / 4:.2f} s; "
            f"whole workstreams per slot: {math.ceil(n / 4)}), critical-path-first list "
            f"scheduling at no cost: {sim4:.2f} s; each workstream: tool `sleep {scale:g}` "
            f"(no bundle has an estimate) + append to its own file (its scope), acceptance "
            f"`sleep {acceptance:g}`; dependencies as converted.",
            f"{runs} run(s) per variant, interleaved; `uet run --jobs J --land never --json`, "
            "wall time of the whole process (the verdict), default settings; excl. start-up: "
            "from the first tool's start to the process's end.",
        ]
    finally:
        cleanup(wd)
    if quick:
        table.notes.append("--quick: tool 0.1 s, acceptance 0.05 s; a smoke test.")
    return [emit(table)]


if __name__ == "__main__":
    main()
