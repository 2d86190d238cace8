"""B8 — inbox ref contention: many remote workers pushing their patches to one repository.

Part 1 (throughput): N pushes of distinct inbox refs (``refs/uet/inbox/RUN/WS/1``, 1,000; 100
with ``--quick``), C git clients in flight at once, on loopback: through ``uet serve`` (an
in-process server, a run token) and over ``file://``, with the settings uet applies to the
served repository (``commands.serve.SERVE_CONFIG``: ``receive.autogc=false``, ``gc.auto=0``,
``core.packedRefsTimeout=10000``, ...) and, over ``file://``, with git's defaults; plus a run
through ``uet serve`` while a pruner deletes the refs already pushed (what the coordinator's
pruning of terminal inbox refs does: every delete takes the ``packed-refs`` lock). Reports
wall time, pushes/s, failures, per-push latency, and whether ``git fsck --strict`` is clean.

Part 2 (cost of one push as the ref count grows): sequential pushes into a repository that
already holds R other refs, loose or packed (``git pack-refs --all``). A push first reads the
receiving side's ref advertisement, every ref of the repository, so its cost grows with R:
pruning terminal inbox refs keeps R near the number of attempts in flight instead of every
attempt the repository ever saw.

    python bench/b8_inbox.py [--quick] [--pushes N] [--concurrency C]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Stats, Table, bench_env, cleanup, emit, git, workdir  # noqa: E402
from uet_git.commands.serve import SERVE_CONFIG, start_server  # noqa: E402
from uet_git.gitrepo import Repo, objects  # noqa: E402
from uet_git.ledger.layout import inbox_prefix, inbox_ref, new_run_id  # noqa: E402

RECEIVE_SETTINGS = [kv for kv in SERVE_CONFIG if not kv.startswith(("http.", "uploadpack."))]


@dataclass
class Outcome:
    wall: float
    latencies: list[float]
    failures: list[str]


def _setup(wd: Path, n: int, run: str) -> tuple[Path, Path, list[tuple[str, str]]]:
    """A served repository (bare, one commit), a worker's clone, and ``n`` patch commits
    (each with the trailers of its inbox ref) made in the clone: ``[(oid, ref), ...]``."""
    bare = wd / "served.git"
    git(wd, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = wd / "seed"
    git(wd, "init", "-q", "-b", "main", str(seed))
    (seed / "README.md").write_text("inbox bench\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(bare), "main")
    clone = wd / "worker"
    git(wd, "clone", "-q", str(bare), str(clone))
    repo = Repo.open(clone)
    base = repo.rev_parse("HEAD")
    assert base is not None
    commits = []
    for i in range(n):
        ws = f"w{i:05d}"
        tree = objects.build_tree(repo, objects.commit_tree(repo, base),
                                  {f"{ws}.txt": f"{ws}\n".encode()})
        msg = (f"{ws}: change\n\nUet-Workstream: {ws}\nUet-Run: {run}\nUet-Tool: shell\n"
               "Uet-Attempt: 1\n")
        commits.append((objects.make_commit(repo, tree, [base], msg), inbox_ref(run, ws, 1)))
    return bare, clone, commits


def _push(clone: Path, url: str, oid: str, ref: str, pre: Sequence[str],
          post: Sequence[str] = ()) -> tuple[float, str | None]:
    env = {**bench_env(), "GIT_TERMINAL_PROMPT": "0"}
    t0 = time.perf_counter()
    proc = subprocess.run(["git", *pre, "push", "-q", *post, url, f"{oid}:{ref}"], cwd=clone,
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return dt, (lines[0] if lines else f"exit {proc.returncode}")[:160]
    return dt, None


def _storm(clone: Path, url: str, commits: list[tuple[str, str]], concurrency: int,
           pre: Sequence[str], post: Sequence[str] = ()) -> Outcome:
    lat: list[float] = []
    fails: list[str] = []
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for dt, err in pool.map(lambda c: _push(clone, url, c[0], c[1], pre, post), commits):
            lat.append(dt)
            if err:
                fails.append(err)
    return Outcome(time.perf_counter() - t0, lat, fails)


def _pruner(bare: Path, prefix: str, stop: threading.Event, deleted: list[int],
            errors: list[str]) -> None:
    """The coordinator's pruning, simulated: every 0.2 s delete (compare-and-swap, one
    transaction) the inbox refs pushed so far."""
    while not stop.wait(0.2):
        refs = git(bare, "for-each-ref", "--format=%(objectname) %(refname)", prefix)
        lines = [ln.split(" ") for ln in refs.splitlines()]
        if not lines:
            continue
        stdin = "".join(f"delete {name} {oid}\n" for oid, name in lines).encode()
        proc = subprocess.run(["git", "-c", "core.packedRefsTimeout=10000", "update-ref",
                               "--stdin"], cwd=bare, input=stdin, capture_output=True)
        if proc.returncode == 0:
            deleted.append(len(lines))
        else:
            errors.append(proc.stderr.decode(errors="replace").strip()[:160])


def _fsck_ok(bare: Path) -> str:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=bare,
                          capture_output=True, text=True)
    return "clean" if proc.returncode == 0 and "error" not in proc.stderr.lower() else "ERRORS"


def _row(table: Table, label: str, out: Outcome, n: int, concurrency: int, bare: Path,
         prefix: str, extra: str = "") -> None:
    refs = len(git(bare, "for-each-ref", prefix).splitlines())
    first = f" (first: {out.failures[0]})" if out.failures else ""
    lat = Stats.of(out.latencies)
    p95 = sorted(out.latencies)[int(0.95 * (len(out.latencies) - 1))]
    table.add(label, n, concurrency, f"{out.wall:.1f} s", f"{n / out.wall:.1f}",
              f"{len(out.failures)}{first}", f"{lat.median * 1000:.0f} / {p95 * 1000:.0f} ms",
              f"{refs}{extra}", _fsck_ok(bare))


def throughput(n: int, concurrency: int) -> Table:
    table = Table(f"B8 inbox pushes: {n} distinct inbox refs, {concurrency} clients at once, "
                  "loopback",
                  ["transport", "pushes", "in flight", "wall", "pushes/s", "failures",
                   "latency p50 / p95", "inbox refs after", "git fsck --strict"])
    settings = " ".join(f"-c {kv}" for kv in RECEIVE_SETTINGS)
    cases: list[tuple[str, Callable[[Path, Path, list[tuple[str, str]], str], None]]] = []

    def serve(bare: Path, clone: Path, commits: list[tuple[str, str]], run: str,
              prune: bool = False) -> None:
        with start_server(Repo.open(bare, bare_ok=True), "127.0.0.1:0") as server:
            token = server.issue_token(run)
            pre = ["-c", f"http.extraHeader=Authorization: Bearer {token}"]
            stop, deleted, errors = threading.Event(), [], []  # type: ignore[var-annotated]
            pruner = threading.Thread(target=_pruner,
                                      args=(bare, inbox_prefix(run), stop, deleted, errors))
            if prune:
                pruner.start()
            out = _storm(clone, server.url, commits, concurrency, pre)
            stop.set()
            if prune:
                pruner.join()
                out.failures += [f"prune: {e}" for e in errors]
            extra = f" ({sum(deleted)} pruned meanwhile)" if prune else ""
            label = "uet serve, pruning meanwhile" if prune else "uet serve"
            _row(table, label, out, n, concurrency, bare, inbox_prefix(run), extra)

    def file_settings(bare: Path, clone: Path, commits: list[tuple[str, str]],
                      run: str) -> None:
        out = _storm(clone, bare.as_uri(), commits, concurrency, [],
                     [f"--receive-pack=git {settings} receive-pack"])
        _row(table, "file://, uet's settings", out, n, concurrency, bare, inbox_prefix(run))

    def file_defaults(bare: Path, clone: Path, commits: list[tuple[str, str]],
                      run: str) -> None:
        out = _storm(clone, bare.as_uri(), commits, concurrency, [])
        _row(table, "file://, git defaults", out, n, concurrency, bare, inbox_prefix(run))

    cases = [("serve", serve), ("file", file_settings), ("file-defaults", file_defaults),
             ("serve-prune", lambda b, c, cs, r: serve(b, c, cs, r, prune=True))]
    for name, case in cases:
        wd = workdir(f"b8-{name}")
        try:
            run = new_run_id()
            bare, clone, commits = _setup(wd, n, run)
            case(bare, clone, commits, run)
        finally:
            cleanup(wd)
    table.notes.append("latency: one `git push` client process, start to exit; failures: "
                       "pushes that exited non-zero (first message shown)")
    table.notes.append(f"uet's settings: {', '.join(RECEIVE_SETTINGS)}")
    return emit(table)


def _fill(bare: Path, base: str, count: int, packed: bool) -> None:
    """``count`` refs of finished runs' inbox refs (what no pruning leaves behind)."""
    if count:
        run = "20260101-000000-0000"
        stdin = "".join(f"create {inbox_ref(run, f'old{i:06d}', 1)} {base}\n"
                        for i in range(count)).encode()
        git(bare, "update-ref", "--stdin", input=stdin)
    if packed:
        git(bare, "pack-refs", "--all", "--prune")


def per_push_cost(sizes: Sequence[int], pushes: int) -> Table:
    table = Table(f"B8 cost of one inbox push as the repository's ref count grows "
                  f"({pushes} sequential pushes each)",
                  ["other refs", "refs", "uet serve", "file://"])
    for count in sizes:
        for packed in (False, True):
            wd = workdir("b8-cost")
            try:
                run = new_run_id()
                bare, clone, commits = _setup(wd, 2 * pushes, run)
                base = git(bare, "rev-parse", "main")
                _fill(bare, base, count, packed)
                with start_server(Repo.open(bare, bare_ok=True), "127.0.0.1:0") as server:
                    pre = ["-c", "http.extraHeader=Authorization: Bearer "
                           + server.issue_token(run)]
                    settings = " ".join(f"-c {kv}" for kv in RECEIVE_SETTINGS)
                    post = [f"--receive-pack=git {settings} receive-pack"]
                    served: list[float] = []
                    local: list[float] = []
                    for i in range(pushes):  # interleaved: the machine's drift hits both
                        oid, ref = commits[2 * i]
                        dt, err = _push(clone, server.url, oid, ref, pre)
                        if err:
                            raise RuntimeError(f"B8: push failed: {err}")
                        served.append(dt)
                        oid, ref = commits[2 * i + 1]
                        dt, err = _push(clone, bare.as_uri(), oid, ref, [], post)
                        if err:
                            raise RuntimeError(f"B8: push failed: {err}")
                        local.append(dt)
                table.add(f"{count:,}", "packed" if packed else "loose",
                          Stats.of(served).fmt("ms", 0, 1000), Stats.of(local).fmt("ms", 0, 1000))
            finally:
                cleanup(wd)
    table.notes.append("median (min-max) of one `git push` client process; 'other refs': "
                       "inbox refs of earlier attempts left in the repository (no pruning), "
                       "loose files or one packed-refs file")
    return emit(table)


def main(quick: bool = False, pushes: int | None = None,
         concurrency: int | None = None) -> list[Table]:
    n = pushes or (100 if quick else 1000)
    c = concurrency or (50 if quick else 100)
    sizes = (0, 1000, 10_000) if quick else (0, 1000, 10_000, 30_000)
    return [throughput(n, c), per_push_cost(sizes, 5 if quick else 7)]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 pushes, smaller ref counts")
    ap.add_argument("--pushes", type=int, help="pushes in part 1 (default 1000; 100 quick)")
    ap.add_argument("--concurrency", type=int, help="clients in flight (default 100; 50 quick)")
    args = ap.parse_args()
    os.environ.update(bench_env())
    main(args.quick, args.pushes, args.concurrency)
