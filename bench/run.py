"""Run uet's benchmarks and print their tables.

    python bench/run.py [--quick] [--only B1,B2,B3,B4,L1,B6,B5,CH,B7,B8] [--markdown FILE]

B7 and B8 run only when named in ``--only``.

B1 per-workstream overhead vs by hand, B2 scheduling efficiency, B3 integration cost,
B4 memory, L1 the ledger (bench/ledger.py), B6 the sandbox's cost per command start, B5 the
verification queue (speculative vs window 1), CH the corpus headline (41 converted legacy
workstreams, 4 jobs vs 1).
``--quick`` is the CI smoke mode: fewer runs, smaller sizes, well under a minute on 2 cores,
no network. A missed target is printed as MISSED; it never makes this command fail. The exit
code is non-zero only when a benchmark could not run at all (uet crashed, git failed), so that
the benchmarks never rot silently.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import PROBLEMS, Table  # noqa: E402

# name -> (module under bench/, title)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "B1": ("b1_overhead", "per-workstream overhead vs by hand"),
    "B2": ("b2_scheduling", "scheduling efficiency"),
    "B3": ("b3_integration", "integration cost"),
    "B4": ("b4_memory", "memory"),
    "L1": ("ledger", "ledger"),
    "B6": ("b6_sandbox", "sandbox cost per command start"),
    "B5": ("b5_queue", "verification-bound runs: speculative queue vs window 1"),
    "CH": ("corpus_headline", "the seed's headline on its own corpus"),
    "B7": ("b7_dask", "the Dask executor's cost per job vs local threads"),
    "B8": ("b8_inbox", "inbox ref contention: concurrent pushes"),
}
# Run only when named in --only: each starts servers or a cluster and takes minutes.
OPT_IN = frozenset({"B7", "B8"})


def machine() -> list[str]:
    def out(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        import pygit2

        pg = f"{pygit2.__version__} (libgit2 {pygit2.LIBGIT2_VERSION})"
    except ImportError:
        pg = "not installed"
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"cpus (nproc): {os.cpu_count()} ({cpu})",
        f"memory: {mem}",
        f"os: {platform.platform()}",
        f"{out('git', '--version')}",
        f"python {platform.python_version()}; pygit2 {pg}",
        f"uet commit: {out('git', '-C', str(ROOT), 'rev-parse', '--short', 'HEAD')}",
    ]


def load(name: str) -> Callable[[bool], object] | None:
    module, _ = BENCHMARKS[name]
    try:
        mod = importlib.import_module(f"bench.{module}")
    except ModuleNotFoundError as exc:
        if exc.name in (f"bench.{module}",):
            return None
        raise
    fn: Callable[[bool], object] = mod.main
    return fn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke mode: fewer runs, small sizes")
    ap.add_argument("--only", default="", help="comma-separated: " + ",".join(BENCHMARKS))
    ap.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = ap.parse_args(argv)
    wanted = [s.strip().upper() for s in args.only.split(",") if s.strip()] or [
        b for b in BENCHMARKS if b not in OPT_IN]
    unknown = [w for w in wanted if w not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    info = machine()
    cmd = "python bench/run.py" + (" --quick" if args.quick else "") + (
        f" --only {','.join(wanted)}" if args.only else "")
    print(f"$ {cmd}")
    for line in info:
        print(f"  {line}")
    print(flush=True)

    tables: list[Table] = []
    failed: list[str] = []
    t_all = time.perf_counter()
    for name in wanted:
        title = BENCHMARKS[name][1]
        print(f"## {name} {title}", flush=True)
        t0 = time.perf_counter()
        try:
            fn = load(name)
            if fn is None:
                print(f"{name}: bench/{BENCHMARKS[name][0]}.py is missing; skipped\n", flush=True)
                continue
            got = fn(args.quick)
            tables.extend(t for t in (got or []) if isinstance(t, Table))  # type: ignore[union-attr]
        except Exception:
            failed.append(name)
            print(f"{name}: could not run:\n{traceback.format_exc()}", file=sys.stderr, flush=True)
        print(f"({name} took {time.perf_counter() - t0:.1f} s)\n", flush=True)
    total = time.perf_counter() - t_all
    if PROBLEMS:
        print("UET PROBLEMS seen while benchmarking (figures of these runs are suspect):")
        for p in PROBLEMS:
            print(f"  - {p}")
    print(f"total {total:.1f} s" + (f"; could not run: {', '.join(failed)}" if failed else ""))

    if args.markdown:
        body = [f"Command: `{cmd}` (total {total:.0f} s)", "", "Machine:", ""]
        body += [f"- {line}" for line in info]
        body += ["", *(t.render_markdown() + "\n" for t in tables)]
        if PROBLEMS:
            body += ["Problems seen in uet while benchmarking:", ""]
            body += [f"- {p}" for p in PROBLEMS]
        args.markdown.write_text("\n".join(body))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
