"""Shared benchmark harness: timing statistics, tables, repository generators, workstream
writers, the random DAG generator, and running ``uet`` as a subprocess (with its peak RSS).

Everything here is deterministic: the same seed gives the same repository bytes and the same
DAG, so figures from two runs differ only by the machine's noise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

# Fixed identities and dates: commits (and so the generated repositories) are byte-identical
# from one machine to the next, and git never asks who the user is (CI has no git config).
BENCH_GIT_ENV = {
    "GIT_AUTHOR_NAME": "uet bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "uet bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
_FIXED_DATE = "1700000000 +0000"


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **BENCH_GIT_ENV}
    # A user's UET_JOBS / PIPELINE_* must not change what a benchmark measures.
    for k in ("UET_JOBS", "PIPELINE_MAX_WORKERS", "PIPELINE_DRY_RUN", "UET_DEBUG"):
        env.pop(k, None)
    # An installed uet runs from compiled bytecode; with PYTHONDONTWRITEBYTECODE set (some
    # shells and CI images) every `python -m uet_git` compiled ~100 modules from source first,
    # ~0.2 s of CPU counted as uet's start-up in every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    samples: tuple[float, ...]

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        s = tuple(samples)
        if not s:
            raise ValueError("no samples")
        return cls(s)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    @property
    def n(self) -> int:
        return len(self.samples)

    def fmt(self, unit: str = "s", digits: int = 3, scale: float = 1.0) -> str:
        """``median (min-max)`` with a unit, e.g. ``0.642 s (0.610-0.700)``."""
        m, lo, hi = self.median * scale, self.min * scale, self.max * scale
        return f"{m:.{digits}f} {unit} ({lo:.{digits}f}-{hi:.{digits}f})".replace(" ()", "")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_interleaved(
    variants: Mapping[str, Callable[[], float | None]], runs: int
) -> dict[str, Stats]:
    """Run each variant ``runs`` times, interleaved (a, b, a, b, ...) so slow drift of the
    machine hits every variant alike. A variant returns its own figure (seconds) or None to be
    timed from outside."""
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            got = fn()
            samples[name].append(time.perf_counter() - t0 if got is None else float(got))
    return {k: Stats.of(v) for k, v in samples.items()}


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf")


def verdict(met: bool) -> str:
    return "target met" if met else "MISSED"


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def render_text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            for i, c in enumerate(row):
                widths[i] = max(widths[i], len(c))
        line = "  ".join("-" * w for w in widths)
        out = [self.title, "=" * len(self.title)]
        out.append("  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True)))
        out.append(line)
        for row in self.rows:
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        out.extend(f"  * {n}" for n in self.notes)
        return "\n".join(out)

    def render_markdown(self) -> str:
        out = [f"### {self.title}", ""]
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join("---" for _ in self.headers) + "|")
        for row in self.rows:
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        if self.notes:
            out.append("")
            out.extend(f"- {n}" for n in self.notes)
        return "\n".join(out)


def _cell(c: object) -> str:
    if isinstance(c, float):
        return f"{c:.3f}"
    return str(c)


def emit(table: Table) -> Table:
    print(table.render_text(), flush=True)
    print(flush=True)
    return table


# --------------------------------------------------------------------------- git helpers


def git(cwd: Path | str, *args: str, input: bytes | None = None) -> str:
    proc = subprocess.run(
        ["git", "-c", "gc.auto=0", *args],
        cwd=cwd, input=input, capture_output=True, env=bench_env(),
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.decode()}")
    return proc.stdout.decode().strip()


def cache_dir() -> Path:
    """Where generated repositories are kept between benchmark runs (``UET_BENCH_CACHE``)."""
    d = Path(os.environ.get("UET_BENCH_CACHE") or Path(tempfile.gettempdir()) / "uet-bench-cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


# --------------------------------------------------------------------------- repositories

GENERATOR_VERSION = 1  # bump when the generated bytes change, so stale caches are not reused


@dataclass(frozen=True)
class RepoShape:
    name: str
    files: int
    mean_bytes: int
    seed: int = 20261125

    @property
    def key(self) -> str:
        return f"{self.name}-v{GENERATOR_VERSION}-{self.files}f-{self.mean_bytes}b-s{self.seed}"


SMALL = RepoShape("small", files=100, mean_bytes=1_000)
LARGE = RepoShape("large", files=30_000, mean_bytes=6_900)  # ~200 MB of text
MEDIUM = RepoShape("medium", files=3_000, mean_bytes=3_000)  # --quick stand-in for LARGE


def _file_path(i: int) -> str:
    # 100 files per directory, two levels: like a source tree, and no giant flat directory.
    return f"src/pkg{i // 1000:02d}/mod{(i // 100) % 10}/file{i:05d}.txt"


def iter_repo_files(shape: RepoShape) -> Iterable[tuple[str, bytes]]:
    """The files of ``shape``: deterministic text (base64 lines of seeded random bytes), sizes
    spread between 0.2x and 1.8x the mean."""
    rng = random.Random(shape.seed)
    for i in range(shape.files):
        size = max(16, int(shape.mean_bytes * rng.uniform(0.2, 1.8)))
        body = base64.encodebytes(rng.randbytes(size * 3 // 4))
        yield _file_path(i), f"# file {i}\n".encode() + body


def _fast_import(dest: Path, shape: RepoShape) -> None:
    """Build a bare repository holding one commit of ``shape`` with ``git fast-import``: far
    faster than writing 30,000 files and ``git add``-ing them."""
    git(dest.parent, "init", "-q", "--bare", "-b", "main", str(dest))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet", "--done"], cwd=dest, stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, env=bench_env(),
    )
    assert proc.stdin is not None
    w = proc.stdin.write
    msg = f"generated {shape.key}\n".encode()
    w(b"commit refs/heads/main\n")
    w(f"author uet bench <bench@example.com> {_FIXED_DATE}\n".encode())
    w(f"committer uet bench <bench@example.com> {_FIXED_DATE}\n".encode())
    w(b"data %d\n%s\n" % (len(msg), msg))
    for path, data in iter_repo_files(shape):
        w(f"M 100644 inline {path}\n".encode())
        w(b"data %d\n%s\n" % (len(data), data))
    w(b"done\n")
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {shape.key}")


def cached_bare_repo(shape: RepoShape) -> Path:
    """The bare repository of ``shape``, generated once and kept in :func:`cache_dir`."""
    final = cache_dir() / f"{shape.key}.git"
    if (final / "HEAD").is_file():
        try:
            git(final, "rev-parse", "-q", "--verify", "main^{commit}")
            return final
        except RuntimeError:
            pass  # a broken cache entry: build it again
    tmp = Path(tempfile.mkdtemp(prefix=f".{shape.key}.", dir=cache_dir()))
    try:
        _fast_import(tmp / "repo.git", shape)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp / "repo.git", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def make_repo(shape: RepoShape, dest: Path) -> Path:
    """A fresh non-bare repository at ``dest`` with ``shape`` checked out on ``main``
    (a local clone of the cached bare repository: objects hard-linked, files checked out)."""
    src = cached_bare_repo(shape)
    dest.parent.mkdir(parents=True, exist_ok=True)
    git(dest.parent, "clone", "-q", "--no-tags", str(src), str(dest))
    git(dest, "remote", "remove", "origin")
    return dest


def repo_size(path: Path) -> tuple[int, int]:
    """(tracked files, bytes of tracked files) at HEAD."""
    out = git(path, "ls-tree", "-r", "-l", "HEAD")
    n = total = 0
    for line in out.splitlines():
        n += 1
        total += int(line.split()[3])
    return n, total


# --------------------------------------------------------------------------- workstreams


def write_workstreams(dest: Path, specs: Sequence[Mapping[str, object]]) -> Path:
    """One JSON workstream file per spec in a fresh directory ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for spec in specs:
        (dest / f"{spec['id']}.json").write_text(json.dumps(spec, indent=1) + "\n")
    return dest


def ws_id(i: int) -> str:
    return f"ws-{i:04d}"


def append_tool(wid: str, sleep: float = 0.0) -> str:
    """The shell tool every benchmark uses: (sleep, then) append a line to the workstream's own
    file. The by-hand baseline runs the very same string."""
    pre = f"sleep {sleep:.3f} && " if sleep > 0 else ""
    return f'{pre}mkdir -p bench-ws && echo "line from {wid}" >> bench-ws/{wid}.txt'


def independent_specs(n: int, *, sleep: float = 0.0, acceptance: Sequence[str] = ("true",)
                      ) -> list[dict[str, object]]:
    return [
        {"id": ws_id(i), "tool": "shell", "command": append_tool(ws_id(i), sleep),
         "acceptance": list(acceptance)}
        for i in range(1, n + 1)
    ]


# --------------------------------------------------------------------------- random DAGs


@dataclass(frozen=True)
class Dag:
    ids: list[str]
    deps: dict[str, list[str]]
    durations: dict[str, float]

    def critical_path(self) -> float:
        finish: dict[str, float] = {}
        for i in self.ids:  # ids are in topological order by construction
            finish[i] = self.durations[i] + max((finish[d] for d in self.deps[i]), default=0.0)
        return max(finish.values(), default=0.0)

    def total(self) -> float:
        return sum(self.durations.values())

    def lower_bound(self, workers: int) -> float:
        """The physical limit: max(critical path, total work / workers)."""
        return max(self.critical_path(), self.total() / workers)

    def waves(self) -> list[list[str]]:
        level: dict[str, int] = {}
        for i in self.ids:
            level[i] = 1 + max((level[d] for d in self.deps[i]), default=-1)
        out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for i in self.ids:
            out[level[i]].append(i)
        return out

    def specs(self, estimates: bool = True) -> list[dict[str, object]]:
        """Workstreams that sleep their duration; with ``estimates``, each states its duration
        as ``estimate`` (the documented planning hint), as a user who knows would."""
        out: list[dict[str, object]] = []
        for i in self.ids:
            spec: dict[str, object] = {"id": i, "tool": "shell",
                                       "command": append_tool(i, self.durations[i]),
                                       "depends_on": list(self.deps[i])}
            if estimates and self.durations[i] > 0:
                spec["estimate"] = self.durations[i]
            out.append(spec)
        return out


def random_dag(n: int, seed: int, *, max_out: int = 3, dmin: float = 0.1, dmax: float = 1.0
               ) -> Dag:
    """``n`` nodes in topological order; each node gets 0..``max_out`` edges to later nodes
    (its dependents), durations uniform in [dmin, dmax] rounded to 10 ms."""
    rng = random.Random(seed)
    ids = [ws_id(i) for i in range(1, n + 1)]
    deps: dict[str, list[str]] = {i: [] for i in ids}
    for k, node in enumerate(ids):
        later = ids[k + 1:]
        for dep in rng.sample(later, min(len(later), rng.randint(0, max_out))):
            deps[dep].append(node)
    for i in ids:
        deps[i].sort()
    durations = {i: round(rng.uniform(dmin, dmax), 2) for i in ids}
    return Dag(ids, deps, durations)


def simulate_list_schedule(dag: Dag, workers: int, *, waves: bool) -> float:
    """Makespan of an ideal zero-overhead scheduler: greedy, longest remaining path first; with
    ``waves``, a barrier after each wave."""
    import heapq

    rem: dict[str, float] = {}
    dependents: dict[str, list[str]] = {i: [] for i in dag.ids}
    for i in dag.ids:
        for d in dag.deps[i]:
            dependents[d].append(i)
    for i in reversed(dag.ids):
        rem[i] = dag.durations[i] + max((rem[c] for c in dependents[i]), default=0.0)
    if waves:
        t = 0.0
        for wave in dag.waves():
            free = [0.0] * workers
            for i in sorted(wave, key=lambda x: -rem[x]):
                s = heapq.heappop(free)
                heapq.heappush(free, s + dag.durations[i])
            t += max(free)
        return t
    missing = {i: len(dag.deps[i]) for i in dag.ids}
    ready = [(-rem[i], i) for i in dag.ids if missing[i] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    idle = workers
    while ready or running:
        while ready and idle:
            _, i = heapq.heappop(ready)
            heapq.heappush(running, (now + dag.durations[i], i))
            idle -= 1
        now, done = heapq.heappop(running)
        idle += 1
        for c in dependents[done]:
            missing[c] -= 1
            if missing[c] == 0:
                heapq.heappush(ready, (-rem[c], c))
    return now


# --------------------------------------------------------------------------- running uet


@dataclass
class UetResult:
    returncode: int
    wall: float
    stdout: str
    stderr: str
    peak_rss_kib: int | None = None  # of the uet process itself
    children_rss_kib: int | None = None  # largest single child (git, tools)
    events: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)  # the --json summary object

    def committed(self) -> int:
        counts = self.summary.get("counts")
        return int(counts.get("committed", 0)) if isinstance(counts, dict) else 0


# What went wrong in uet during the benchmarks (quarantines, internal errors): printed with the
# tables. A benchmark still reports its figures; this list says which ones to distrust.
PROBLEMS: list[str] = []


# Runs uet in-process under a tiny wrapper so /proc/self/status VmHWM is uet's own peak RSS,
# not the interpreter that drives the benchmark; RUSAGE_CHILDREN gives its largest child.
_RSS_WRAPPER = """
import os, resource, runpy, sys
out = os.environ.pop("UET_BENCH_RSS_OUT")
sys.argv = ["uet", *sys.argv[1:]]
try:
    runpy.run_module("uet_git", run_name="__main__", alter_sys=True)
finally:
    # VmHWM is this process's own high-water mark. ru_maxrss is not: Linux folds the forked
    # copy of the parent's memory into it at exec, so a big benchmark driver would leak in.
    s = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        with open("/proc/self/status") as st:
            for line in st:
                if line.startswith("VmHWM:"):
                    s = int(line.split()[1])
    except OSError:
        pass
    c = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    with open(out, "w") as f:
        f.write(f"{s} {c}\\n")
"""


def run_uet(
    args: Sequence[str], *, cwd: Path, measure_rss: bool = False, stream_events: bool = False,
    timeout: float = 3600, expect: int | None = None,
) -> UetResult:
    """Run ``python -m uet_git ARGS`` in ``cwd``. With ``stream_events`` (use with ``--json``),
    every stdout line that parses as a JSON object is kept with the harness's clock at arrival,
    which is finer than the seconds in ledger commit dates.

    An exit code other than 0/1 (uet crashed, or refused its input) raises: the benchmark
    cannot run. With ``expect`` (workstreams that should commit), a run that committed fewer is
    recorded in :data:`PROBLEMS` with uet's own summary message."""
    env = bench_env()
    rss_file = None
    if measure_rss:
        fd, rss_file = tempfile.mkstemp(prefix="uet-rss-")
        os.close(fd)
        env["UET_BENCH_RSS_OUT"] = rss_file
        cmd = [sys.executable, "-c", _RSS_WRAPPER, *args]
    else:
        cmd = [sys.executable, "-m", "uet_git", *args]
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    events: list[tuple[float, dict[str, object]]] = []
    out_lines: list[str] = []
    err_box: list[str] = []

    import threading

    def _drain_err() -> None:
        assert proc.stderr is not None
        err_box.append(proc.stderr.read())

    th = threading.Thread(target=_drain_err, daemon=True)
    th.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.perf_counter() - t0
        out_lines.append(line)
        if stream_events and line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                events.append((now, obj))
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    wall = time.perf_counter() - t0
    th.join()
    res = UetResult(rc, wall, "".join(out_lines), "".join(err_box), events=events)
    if rss_file:
        try:
            parts = Path(rss_file).read_text().split()
            res.peak_rss_kib, res.children_rss_kib = int(parts[0]), int(parts[1])
        except (OSError, ValueError, IndexError):
            pass
        finally:
            os.unlink(rss_file)
    for line in reversed(out_lines):
        if line.startswith('{"event":"summary"') or line.startswith('{"event": "summary"'):
            with contextlib.suppress(ValueError):
                res.summary = json.loads(line)
            break
    if rc not in (0, 1):
        raise RuntimeError(
            f"uet {' '.join(args)} exited {rc} in {cwd}:\n{res.stderr[-3000:]}\n"
            f"{res.stdout[-3000:]}"
        )
    if expect is not None and (rc != 0 or res.committed() != expect):
        msg = str(res.summary.get("message", "")) or res.stderr.strip()[-500:]
        PROBLEMS.append(
            f"uet {' '.join(args[:1])} ({expect} workstreams, {' '.join(args[2:])}): exit {rc}, "
            f"counts {res.summary.get('counts')}: {msg[:600]}")
    return res


def uet_run_args(ws_dir: Path, jobs: int, *extra: str) -> list[str]:
    return ["run", str(ws_dir), "--jobs", str(jobs), "--land", "never", *extra]


def workdir(prefix: str) -> Path:
    """A scratch directory for one benchmark (removed by the caller with ``cleanup``)."""
    base = os.environ.get("UET_BENCH_TMP") or None
    return Path(tempfile.mkdtemp(prefix=f"uet-bench-{prefix}-", dir=base))


def cleanup(path: Path) -> None:
    if os.environ.get("UET_BENCH_KEEP"):
        print(f"(kept {path})")
        return
    shutil.rmtree(path, ignore_errors=True)
