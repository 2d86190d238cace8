"""B4 — memory: peak RSS of ``uet run`` over 1,000 trivial workstreams (target <= 200 MB), and
how it grows from 100 to 1,000.

uet runs under a small wrapper (bench/common.py, ``_RSS_WRAPPER``) that executes it in its own
interpreter and reads VmHWM from /proc/self/status at exit: the peak RSS of uet's own
process, not of the benchmark driver. (Children's ru_maxrss is not shown: a forked child's
figure starts from its parent's RSS, so it says nothing about the child.)
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.common import (
    SMALL,
    Stats,
    Table,
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

TARGET_MB = 200.0


@dataclass(frozen=True)
class Params:
    sizes: tuple[int, ...]
    runs: int


def params(quick: bool) -> Params:
    if quick:
        return Params(sizes=(10, 30), runs=1)
    return Params(sizes=(100, 300, 1000), runs=5)


def main(quick: bool = False) -> list[Table]:
    p = params(quick)
    table = Table(
        "B4 memory: peak RSS of uet run over N trivial workstreams (4 workers)",
        ["workstreams", "peak RSS of uet", "wall", "MB per 100 ws over the smallest", "target",
         "verdict"],
    )
    wd = workdir("b4")
    try:
        repo = make_repo(SMALL, wd / "repo")
        first: float | None = None
        for n in p.sizes:
            ws_dir = write_workstreams(wd / f"ws-{n}", independent_specs(n, acceptance=()))
            rss, wall = [], []
            for _ in range(p.runs):
                res = run_uet(uet_run_args(ws_dir, 4, "--json"), cwd=repo, measure_rss=True,
                              expect=n)
                if res.peak_rss_kib is None:
                    raise RuntimeError("B4: the RSS wrapper reported nothing")
                rss.append(res.peak_rss_kib / 1024)
                wall.append(res.wall)
            st = Stats.of(rss)
            growth = ""
            if first is None:
                first = st.median
                first_n = n
            else:
                growth = f"{(st.median - first) / (n - first_n) * 100:.2f}"
            last = n == p.sizes[-1] and n >= 1000
            table.add(n, st.fmt("MB", 1), Stats.of(wall).fmt(),
                      growth, f"<= {TARGET_MB:.0f} MB" if last else "",
                      verdict(st.max <= TARGET_MB) if last else "")
        table.notes.append(
            f"{p.runs} run(s) per size; verdict on the largest size's worst run. Each workstream "
            "appends a line to its own file, no acceptance; `--land never --json`.")
        if quick:
            table.notes.append("--quick: sizes reduced; the 1,000-workstream target is not "
                               "evaluated.")
    finally:
        cleanup(wd)
    return [emit(table)]
