"""L1, the ledger: one transition and `uet status RUN` with 100, 1,000 and 10,000 patches stored.

    python bench/ledger.py [--quick]

For each size N, a fresh repository gets N - 100 patches of finished runs (100 workstreams
each, six ledger commits per workstream in the writer's format, written with pygit2; their
state, patch, ledger and integration refs created by ONE `git update-ref --stdin`
transaction), then a live 100-workstream run recorded by the real writer
(`Ledger.record`): every workstream created -> validated -> queued -> applied -> verified ->
committed, each transition timed (600 samples). Then `uet status RUN` runs as a subprocess
(the real command, interpreter start included), 5+ times after one warm-up.

``--batching OLD`` (L2, issue 11): fsyncs per workstream (``strace -f -c``) and wall time of
a 10-workstream trivial ``uet run --land never``, uet at OLD against this tree, interleaved.

Goals (issue 4): a transition at 10,000 patches costs at most 1.5x one at 100; `uet status` of
a 100-workstream run answers within 0.5 s with 10,000 patches stored. ``--quick`` (CI smoke):
100 and 1,000 patches, fewer status repetitions, well under 30 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Stats,
    Table,
    bench_env,
    cleanup,
    emit,
    git,
    ratio,
    run_uet,
    verdict,
    workdir,
)

RUN_SIZE = 100  # workstreams per run (filler runs and the measured one)
STEPS = ("created", "validated", "queued", "applied", "verified", "committed")
TRANSITION_GOAL = 1.5
STATUS_GOAL = 0.5


def _make_repo(path: Path) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("ledger benchmark\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "initial")


def _message(subject: str, body: str, trailers: list[tuple[str, str]]) -> str:
    lines = "\n".join(f"{k}: {v}" for k, v in trailers)
    return f"{subject}\n\n{body}\n\n{lines}\n"


def populate(repo_path: Path, patches: int) -> int:
    """Store ``patches`` patches of finished runs (ledger commits + refs); returns the refs made."""
    if patches <= 0:
        return 0
    import json

    import pygit2

    pg = pygit2.Repository(str(repo_path))
    sig = pygit2.Signature("uet", "uet@localhost", 1_700_000_000, 0)
    base = pg.head.target
    base_tree = pg[base].peel(pygit2.Tree)
    lines: list[str] = []
    nruns = (patches + RUN_SIZE - 1) // RUN_SIZE
    made = 0
    for r in range(nruns):
        run = f"20200101-{r // 3600:02d}{(r // 60) % 60:02d}{r % 60:02d}-{r % 65536:04x}"
        n = min(RUN_SIZE, patches - r * RUN_SIZE)
        ids = [f"ws-{i:03d}" for i in range(n)]
        plan = {"nodes": [{"id": w, "depends_on": []} for w in ids], "order": ids}
        tb = pg.TreeBuilder()
        tb.insert("plan.json", pg.create_blob(json.dumps(plan).encode()),
                  pygit2.enums.FileMode.BLOB)
        ledger_tree = tb.write()
        tip = pg.create_commit(None, sig, sig, _message(
            "run: start", f"uet run {run}", [("Uet-Run", run), ("Uet-Base", str(base)),
                                             ("Uet-Target", "main")]), ledger_tree, [])
        for w in ids:
            tbw = pg.TreeBuilder(base_tree)
            tbw.insert(f"{w}.txt", pg.create_blob(f"{run} {w}\n".encode()),
                       pygit2.enums.FileMode.BLOB)
            patch = pg.create_commit(None, sig, sig, _message(
                f"{w}: change", "filler", [("Uet-Workstream", w), ("Uet-Run", run),
                                           ("Uet-Tool", "shell"), ("Uet-Attempt", "1")]),
                tbw.write(), [base])
            frm = "none"
            for to in STEPS:
                tr = [("Uet-Run", run), ("Uet-Workstream", w), ("Uet-Attempt", "1"),
                      ("Uet-From", frm), ("Uet-To", to), ("Uet-Patch", str(patch))]
                if to in ("applied", "verified", "committed"):
                    tr.append(("Uet-Candidate", str(patch)))
                tip = pg.create_commit(None, sig, sig, _message(
                    f"{w}: {frm} -> {to}", f"{w} moved to {to}.", tr), ledger_tree, [tip])
                frm = to
            lines.append(f"create refs/uet/committed/{run}/{w} {patch}")
            lines.append(f"create refs/uet/patches/{run}/{w}/1 {patch}")
            made += 2
        lines.append(f"create refs/uet/ledger/{run} {tip}")
        lines.append(f"create refs/uet/integration/{run} {base}")
        made += 2
    payload = "start\n" + "\n".join(lines) + "\nprepare\ncommit\n"
    git(repo_path, "update-ref", "--stdin", input=payload.encode())
    return made


class MeasuredRun:
    """A real 100-workstream run through ``Ledger.record``; ``step(i)`` takes workstream i
    through its six states and returns the seconds of each record."""

    def __init__(self, repo_path: Path) -> None:
        from uet_git.gitrepo import Repo, objects
        from uet_git.ledger.writer import Ledger

        self.objects = objects
        self.repo = Repo.open(repo_path)
        base = self.repo.rev_parse("HEAD")
        assert base is not None
        self.base = self.tip = base
        self.base_tree = objects.commit_tree(self.repo, base)
        self.ids = [f"ws-{i:03d}" for i in range(RUN_SIZE)]
        plan = {"nodes": [{"id": w, "depends_on": []} for w in self.ids], "order": self.ids}
        self.led = Ledger.create(self.repo, base=base, target="main", plan=plan)
        self.run = self.led.run

    def step(self, i: int) -> list[float]:
        objects, repo, w = self.objects, self.repo, self.ids[i]
        content = {f"{w}.txt": f"{w}\n".encode()}
        patch = objects.make_commit(repo, objects.build_tree(repo, self.base_tree, content),
                                    [self.base], f"{w}: change\n\nUet-Workstream: {w}\n")
        cand_tree = objects.build_tree(repo, objects.commit_tree(repo, self.tip), content)
        cand = objects.make_commit(repo, cand_tree, [self.tip], f"{w}: change\n")
        samples: list[float] = []
        for to in STEPS:
            kw: dict[str, object] = {}
            if to == "created":
                kw = {"patch": patch, "evidence": {"tool.stdout": b"ok\n" * 20}}
            elif to == "applied":
                kw = {"candidate": cand}
            elif to == "committed":
                kw = {"integration": cand}
            t0 = time.perf_counter()
            self.led.record(w, to, attempt=1, **kw)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - t0)
        self.tip = cand
        return samples

    def close(self) -> None:
        self.led.close()


def status_time(repo_path: Path, run: str) -> float:
    res = run_uet(["status", run], cwd=repo_path)
    if f"{RUN_SIZE} workstreams: {RUN_SIZE} committed" not in res.stdout:
        raise RuntimeError(f"uet status gave an unexpected answer:\n{res.stdout[-500:]}")
    return res.wall


def main(quick: bool = False) -> list[Table]:
    # (label, patches stored, finished runs' refs packed as `uet gc` leaves them)
    configs = [("100", 100, False), ("1,000", 1_000, False)]
    if not quick:
        configs += [("10,000", 10_000, False), ("10,000 packed", 10_000, True)]
    labels = [c[0] for c in configs]
    reps = 5 if quick else 9
    table = Table(
        "L1 ledger: one transition and `uet status RUN` vs patches stored",
        ["patches stored", "refs", "populate", "transition (median, min-max, n)",
         "uet status RUN (100 ws)"],
    )
    tmps = {label: workdir("ledger") for label in labels}
    runs: dict[str, MeasuredRun] = {}
    try:
        pop: dict[str, float] = {}
        for label, n, packed in configs:
            repo_path = tmps[label] / "repo"
            _make_repo(repo_path)
            t0 = time.perf_counter()
            populate(repo_path, n - RUN_SIZE)
            if packed:
                git(repo_path, "pack-refs", "--all")
            pop[label] = time.perf_counter() - t0
            runs[label] = MeasuredRun(repo_path)
        # Interleaved (size after size, workstream by workstream) so the machine's drift hits
        # every size alike.
        samples: dict[str, list[float]] = {label: [] for label in labels}
        for i in range(RUN_SIZE):
            for label in labels:
                samples[label].extend(runs[label].step(i))
        ids = {label: runs[label].run for label in labels}
        for label in labels:
            runs.pop(label).close()
        stimes: dict[str, list[float]] = {label: [] for label in labels}
        for label in labels:
            status_time(tmps[label] / "repo", ids[label])  # warm-up: page cache, .pyc
        for _ in range(reps):
            for label in labels:
                stimes[label].append(status_time(tmps[label] / "repo", ids[label]))
        trans = {label: Stats.of(samples[label]) for label in labels}
        status = {label: Stats.of(stimes[label]) for label in labels}
        for label in labels:
            refs = len(git(tmps[label] / "repo", "for-each-ref", "--format=x",
                           "refs/uet/").split())
            table.add(label, f"{refs:,}", f"{pop[label]:.1f} s",
                      f"{trans[label].fmt('ms', 2, 1000)}, n={trans[label].n}",
                      f"{status[label].fmt('s', 3)}, n={status[label].n}")
    finally:
        for m in runs.values():
            m.close()
        for t in tmps.values():
            cleanup(t)
    lo = labels[0]
    goals = [x for x in labels if x.startswith("10,000")] or labels[-1:]
    for hi in goals:
        r = ratio(trans[hi].median, trans[lo].median)
        table.notes.append(f"transition@{hi} / transition@{lo} = {r:.2f} (goal <= "
                           f"{TRANSITION_GOAL}): {verdict(r <= TRANSITION_GOAL)}")
    for hi in goals:
        st = status[hi].median
        table.notes.append(f"`uet status` of a {RUN_SIZE}-workstream run, {hi} patches "
                           f"stored: {st:.3f} s median (goal <= {STATUS_GOAL} s): "
                           f"{verdict(st <= STATUS_GOAL)}")
    if quick:
        table.notes.append("--quick: the goals are stated for 10,000 patches; run without "
                           "--quick for them")
    table.notes.append("a transition = one Ledger.record: evidence blobs, tree, ledger commit, "
                       "one atomic update-ref transaction (all six states of a workstream); "
                       "'packed': the other runs' refs in packed-refs, as `uet gc` leaves them")
    emit(table)
    return [table]


# --------------------------------------------------------------------------- batching (L2)

BATCH_WS = 10


def _batch_repo(path: Path, n: int) -> None:
    """A small repository with ``n`` independent trivial workstreams (tool + acceptance)."""
    _make_repo(path)
    (path / "workstreams").mkdir()
    (path / "uet.toml").write_text('[sandbox]\nmode = "none"\n')
    for i in range(n):
        (path / "workstreams" / f"w{i:02d}.yaml").write_text(
            f"id: w{i:02d}\ntool: shell\ncommand: echo {i} > f{i:02d}.txt\n"
            f"acceptance: [\"test -f f{i:02d}.txt\"]\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "workstreams")


def _fsyncs(trace: Path) -> int:
    """Calls of fsync + fdatasync in an ``strace -c`` summary."""
    total = 0
    for line in trace.read_text().splitlines():
        parts = line.split()
        if parts and parts[-1] in ("fsync", "fdatasync"):
            total += int(parts[3] if len(parts) >= 6 else parts[2])
    return total


# Runs uet in process with `RefUpdater.run` counted: the ref transactions of the whole run.
COUNTING = """
import atexit, sys
from uet_git.gitrepo import refs
calls = [0]
orig = refs.RefUpdater.run
def run(self, tx):
    calls[0] += 1
    return orig(self, tx)
refs.RefUpdater.run = run
atexit.register(lambda: print(f"ref-transactions {calls[0]}", file=sys.stderr))
from uet_git.cli import main
sys.argv = ["uet", *sys.argv[1:]]
main()
"""


def _one_run(template: Path, work: Path, code: Path, jobs: int, *, strace: bool = False,
             count: bool = False) -> float:
    """Copy ``template``, ``uet run --land never`` it with uet from ``code``; wall seconds
    (with ``strace``: the fsync count; with ``count``: the ref transactions)."""
    import shutil  # why: only this mode copies repositories
    import subprocess  # why: strace wraps the uet process

    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(template, repo, symlinks=True)
    env = {**bench_env(), "PYTHONPATH": str(code)}
    args = ["run", "--land", "never", "--jobs", str(jobs)]
    cmd = [sys.executable, "-c", COUNTING, *args] if count else \
        [sys.executable, "-m", "uet_git", *args]
    trace = work / "strace.txt"
    if strace:
        cmd = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(trace), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"uet run ({code}) exited {proc.returncode}: {proc.stderr[-800:]}")
    if count:
        return float(proc.stderr.rsplit("ref-transactions ", 1)[1].split()[0])
    return float(_fsyncs(trace)) if strace else wall


def batching(old: Path, rounds: int, jobs: int) -> Table:
    """L2: fsyncs per workstream and wall time of a 10-workstream trivial run, uet at ``old``
    against this tree, interleaved (old, new, old, new, ...)."""
    work = workdir("ledger-batch")
    codes = {"old": old, "new": ROOT}
    try:
        template = work / "template"
        _batch_repo(template, BATCH_WS)
        fs: dict[str, list[float]] = {k: [] for k in codes}
        txs: dict[str, list[float]] = {k: [] for k in codes}
        walls: dict[str, list[float]] = {k: [] for k in codes}
        for code in codes.values():  # warm-up: .pyc, page cache
            _one_run(template, work, code, jobs, strace=False)
        for _ in range(rounds):
            for label, code in codes.items():
                fs[label].append(_one_run(template, work, code, jobs, strace=True) / BATCH_WS)
                walls[label].append(_one_run(template, work, code, jobs))
                txs[label].append(_one_run(template, work, code, jobs, count=True) / BATCH_WS)
        load = Path("/proc/loadavg").read_text().split()[:3]
        table = Table(f"L2 ledger batching: {BATCH_WS} trivial workstreams, --jobs {jobs}, "
                      f"--land never, {rounds} rounds interleaved",
                      ["uet", "fsyncs / workstream", "ref transactions / workstream", "wall"])
        stats = {k: Stats.of(walls[k]) for k in codes}
        for label in codes:
            f = Stats.of(fs[label])
            t = Stats.of(txs[label])
            table.add(f"{label} ({codes[label]})", f.fmt("", 1), t.fmt("", 1),
                      stats[label].fmt("s", 3))
        r = ratio(stats["new"].median, stats["old"].median)
        table.notes.append(f"wall new / old = {r:.2f} (medians); load average at the end "
                           f"{' '.join(load)}")
        table.notes.append("fsyncs: `strace -f -c -e trace=fsync,fdatasync` of the whole "
                           "`uet run` (git children included), divided by the workstreams; "
                           "ref transactions: `RefUpdater.run` calls of the whole run (run "
                           "start/finish and the queue's candidate refs included)")
        emit(table)
        return table
    finally:
        cleanup(work)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 and 1,000 patches only (< 30 s)")
    ap.add_argument("--batching", metavar="OLD", type=Path,
                    help="L2 instead: fsyncs per workstream and wall time against uet at OLD "
                         "(a worktree, e.g. `git worktree add /tmp/w-old 0a5a78e`)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    import os

    os.environ.update(bench_env())
    if args.batching:
        batching(args.batching.resolve(), args.rounds, args.jobs)
    else:
        main(args.quick)
