"""Two versions of uet on the same workloads, interleaved in one run.

    python bench/versus.py --old OLD_PYTHON [--new NEW_PYTHON] [--runs N] [--quick] [--only TEXT]

OLD_PYTHON / NEW_PYTHON are the interpreters of two virtualenvs, each with one version of
uet installed (``python -m venv /tmp/old && /tmp/old/bin/pip install 'git+URL@REV'`` or a
checkout's ``pip install .``); NEW defaults to this interpreter. Every workload runs on
its own fresh copy of the same repository, old and new alternating (old, new, old, new, ...)
so the machine's drift hits both alike; the table gives the medians and new/old ratios.
Each version's package is byte-compiled first (``compileall``): with
``PYTHONDONTWRITEBYTECODE`` in the caller's shell the first runs would otherwise compile it.

"first tool started" is the time from starting ``uet run`` (one workstream) to its tool's
first instruction: the tool writes ``date +%s.%N`` into a file of its patch, read back from
the run's integration ref (inside the worktree, so a sandbox that allows nothing else still
allows it).

The workloads use only what both versions accept (JSON workstream files, shell tools, no
uet.toml), so each version runs with its own defaults: where the new one runs tools in a
sandbox by default, that cost is part of its figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    SMALL,
    Stats,
    Table,
    bench_env,
    cleanup,
    git,
    independent_specs,
    make_repo,
    random_dag,
    ratio,
    workdir,
    write_workstreams,
)


def uet(python: str, args: list[str], cwd: Path) -> float:
    """Wall seconds of one ``python -m uet_git ARGS``; an exit other than 0/1 aborts."""
    t0 = time.perf_counter()
    proc = subprocess.run([python, "-m", "uet_git", *args], cwd=cwd, env=bench_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{python} -m uet_git {' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-400:]}")
    return took


def package_dir(python: str) -> str:
    """Where ``python`` imports uet from (run outside any checkout: ``-c`` puts the current
    directory first on ``sys.path``)."""
    out = subprocess.run([python, "-c", "import os, uet_git; print(os.path.dirname("
                          "uet_git.__file__))"], capture_output=True, text=True, check=True,
                         cwd="/", env=bench_env())
    return out.stdout.strip()


def first_tool(python: str, scratch: Path) -> float:
    """Seconds from starting ``uet run`` to its only tool's start (see the module doc)."""
    repo = make_repo(SMALL, scratch / "repo")
    ws = write_workstreams(scratch / "ws", [{"id": "ws-first", "tool": "shell",
                                             "command": "date +%s.%N > first-tool.txt"}])
    t0 = time.time()
    uet(python, ["run", str(ws), "--jobs", "1", "--land", "never"], repo)
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/integration/").split()
    if len(refs) != 1:
        raise RuntimeError(f"first tool: expected one integration ref, got {refs}")
    return float(git(repo, "show", f"{refs[0]}:first-tool.txt")) - t0


def dag_specs(n: int, seed: int) -> list[dict[str, object]]:
    dag = random_dag(n, seed, dmin=0.05, dmax=0.3)
    return [
        {"id": i, "tool": "shell", "depends_on": dag.deps[i], "acceptance": ["true"],
         "command": f'sleep {dag.durations[i]:.2f} && mkdir -p d && echo {i} >> d/{i}.txt'}
        for i in dag.ids
    ]


def verify_bound_specs(n: int, tool: float, accept: float) -> list[dict[str, object]]:
    return independent_specs(n, sleep=tool, acceptance=[f"sleep {accept}"])


Workload = tuple[str, str, Callable[[str, Path], float]]  # name, unit note, measure


def workloads(quick: bool) -> list[Workload]:
    n_triv = 8 if quick else 20

    def run_specs(specs: list[dict[str, object]], jobs: int, per: int | None = None
                  ) -> Callable[[str, Path], float]:
        def measure(python: str, scratch: Path) -> float:
            repo = make_repo(SMALL, scratch / "repo")
            ws = write_workstreams(scratch / "ws", specs)
            took = uet(python, ["run", str(ws), "--jobs", str(jobs), "--land", "never"], repo)
            return took / per if per else took

        return measure

    def help_(python: str, scratch: Path) -> float:
        return uet(python, ["--help"], scratch)

    def status(python: str, scratch: Path) -> float:
        repo = make_repo(SMALL, scratch / "repo")
        ws = write_workstreams(scratch / "ws", independent_specs(n_triv))
        uet(python, ["run", str(ws), "--jobs", "4", "--land", "never"], repo)
        return min(uet(python, ["status"], repo) for _ in range(3))

    return [
        ("uet --help", "s", help_),
        ("uet run: first tool started (1 workstream)", "s", first_tool),
        (f"uet status after {n_triv} workstreams", "s", status),
        (f"{n_triv} trivial workstreams, 1 job (per ws)", "s/ws",
         run_specs(independent_specs(n_triv), 1, n_triv)),
        (f"{n_triv} trivial workstreams, 4 jobs (per ws)", "s/ws",
         run_specs(independent_specs(n_triv), 4, n_triv)),
        ("8 workstreams, tool 0.5 s + acceptance 0.5 s, 4 jobs", "s",
         run_specs(verify_bound_specs(8, 0.5, 0.5), 4)),
        (f"random DAG of {12 if quick else 30}, tools 0.05-0.3 s, 4 jobs", "s",
         run_specs(dag_specs(12 if quick else 30, 7), 4)),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the baseline version's python")
    ap.add_argument("--new", default=sys.executable, help="the new version's python")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", dest="json_out", type=Path, help="also write the figures here")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="run only the workloads whose name contains TEXT (repeatable)")
    args = ap.parse_args(argv)
    versions = {"old": args.old, "new": args.new}
    for name, py in versions.items():
        out = subprocess.run([py, "-m", "uet_git", "--version"], capture_output=True, text=True,
                             cwd="/")
        if out.returncode != 0:
            print(f"versus: {name} ({py}) cannot run uet: {out.stderr.strip()[-200:]}",
                  file=sys.stderr)
            return 2
        where = package_dir(py)
        subprocess.run([py, "-m", "compileall", "-q", where], check=True, cwd="/",
                       env=bench_env(), stdout=subprocess.DEVNULL)
        print(f"{name}: {py}: {out.stdout.strip()} from {where}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}; runs per version: {args.runs}")
    table = Table("old vs new, interleaved, same machine, same run",
                  ["workload", "old median", "new median", "new/old"])
    figures: dict[str, dict[str, float]] = {}
    for name, unit, measure in workloads(args.quick):
        if args.only and not any(text in name for text in args.only):
            continue
        samples: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.runs):
            for ver, py in versions.items():
                scratch = workdir("versus")
                try:
                    samples[ver].append(measure(py, scratch))
                finally:
                    cleanup(scratch)
        old, new = Stats.of(samples["old"]), Stats.of(samples["new"])
        table.add(name, old.fmt(unit), new.fmt(unit), f"{ratio(new.median, old.median):.2f}")
        figures[name] = {"old": old.median, "new": new.median}
    print(table.render_text())
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
