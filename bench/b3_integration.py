"""B3 — integration cost: 100 verified patches integrating onto the tip, small and large
repository. The tree merge should cost in proportion to the change, not to the repository.

Two measurements, both reported:

* **merge (in process)**: the integrator's own merge function, ``uet_git.gitrepo.merge.
  merge_trees(repo, base, tip, patch)``, then ``make_commit`` of the candidate on the tip, for
  100 one-file patches prepared off the base (preparation not timed). This isolates the tree
  merge the issue is about. For context, the same loop with pygit2's ``merge_trees``.
* **integrator (uet run)**: ``uet run --json --jobs 4`` of 100 tiny independent workstreams (no
  acceptance commands, so the integrator's verify step has nothing to run). For each patch the
  integrator's service time is ``t(committed) - max(t(queued), t(previous committed))`` from the
  JSON transition events' timestamps: merge, candidate commit and the ledger's three atomic
  transitions (applied, verified, committed), with the workers running beside it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    LARGE,
    MEDIUM,
    SMALL,
    RepoShape,
    Stats,
    Table,
    UetResult,
    cleanup,
    emit,
    git,
    independent_specs,
    make_repo,
    ratio,
    repo_size,
    run_uet,
    uet_run_args,
    verdict,
    workdir,
    write_workstreams,
)


@dataclass(frozen=True)
class Params:
    patches: int
    runs: int
    shapes: tuple[RepoShape, RepoShape]


def params(quick: bool) -> Params:
    if quick:
        return Params(patches=10, runs=1, shapes=(SMALL, MEDIUM))
    return Params(patches=100, runs=5, shapes=(SMALL, LARGE))


# --------------------------------------------------------------------------- in process


def prepare_patches(repo_path: Path, n: int) -> tuple[str, list[str]]:
    """``n`` patch commits whose parent is the base, each appending a line to a different
    existing file (spread over the whole tree)."""
    from uet_git.gitrepo.objects import build_tree, commit_tree, make_commit, read_blob
    from uet_git.gitrepo.repo import Repo

    repo = Repo.open(repo_path)
    base = repo.rev_parse("HEAD")
    files = git(repo_path, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    step = max(1, len(files) // n)
    base_tree = commit_tree(repo, base)
    patches = []
    for k in range(n):
        path = files[(k * step) % len(files)]
        old = read_blob(repo, base, path) or b""
        tree = build_tree(repo, base_tree, {path: old + f"patch {k}\n".encode()})
        patches.append(make_commit(repo, tree, [base], f"patch {k}"))
    return base, patches


def integrate_loop(repo_path: Path, base: str, patches: list[str], merge: str) -> float:
    """Seconds per integration: merge each patch onto the moving tip, commit the candidate."""
    from uet_git.gitrepo.objects import make_commit
    from uet_git.gitrepo.repo import Repo

    repo = Repo.open(repo_path)
    fn: Callable[[str, str], str]
    if merge == "uet":
        from uet_git.gitrepo.merge import merge_trees

        def fn(tip: str, patch: str) -> str:
            res = merge_trees(repo, base, tip, patch)
            if res.tree is None or res.conflicts:
                raise RuntimeError(f"unexpected conflict: {res.conflicts}")
            return str(res.tree)
    else:
        import pygit2  # the raw libgit2 merge, for context (Repo keeps its handle private)

        pg = pygit2.Repository(str(repo.common_dir))

        def fn(tip: str, patch: str) -> str:
            idx = pg.merge_trees(pg[base].tree, pg[tip].tree, pg[patch].tree)
            if idx.conflicts is not None:
                raise RuntimeError("unexpected conflict")
            return str(idx.write_tree(pg))

    tip = base
    t0 = time.perf_counter()
    for k, patch in enumerate(patches):
        tip = make_commit(repo, fn(tip, patch), [tip], f"integrate {k}")
    return (time.perf_counter() - t0) / len(patches)


def merge_table(p: Params, repos: dict[str, Path]) -> Table:
    table = Table(
        f"B3 integration cost, in process: {p.patches} one-file patches onto a moving tip",
        ["merge", "small", "large", "large / small", "target", "verdict"],
    )
    prepared = {name: prepare_patches(path, p.patches) for name, path in repos.items()}
    for merge, label in (("uet", "uet_git.gitrepo.merge.merge_trees"),
                         ("pygit2", "pygit2 Repository.merge_trees (context)")):
        try:
            stats = {name: Stats.of(integrate_loop(repos[name], *prepared[name], merge)
                                    for _ in range(p.runs)) for name in repos}
        except ImportError as exc:
            table.add(label, "n/a", "n/a", "", "", f"not available: {exc}")
            continue
        r = ratio(stats["large"].median, stats["small"].median)
        target = "<= 3" if merge == "uet" else ""
        table.add(label, stats["small"].fmt("ms", 2, 1000), stats["large"].fmt("ms", 2, 1000),
                  f"{r:.2f}", target, verdict(r <= 3) if merge == "uet" else "")
    table.notes.append(f"time per integration (merge + candidate commit), median (min-max) "
                       f"over {p.runs} runs of {p.patches} patches.")
    return table


# --------------------------------------------------------------------------- end to end


def service_times(res: UetResult) -> list[float]:
    """The integrator's time per patch from ``--json`` transition events."""
    queued: dict[str, float] = {}
    committed: list[tuple[float, str]] = []
    for arrival, ev in res.events:
        if ev.get("event") != "transition":
            continue
        t = float(ev["time"]) if isinstance(ev.get("time"), int | float) else arrival
        ws = str(ev.get("ws"))
        if ev.get("to") == "queued":
            queued[ws] = t
        elif ev.get("to") == "committed":
            committed.append((t, ws))
    committed.sort()
    out = []
    prev = None
    for t, ws in committed:
        start = queued.get(ws, t) if prev is None else max(queued.get(ws, t), prev)
        out.append(t - start)
        prev = t
    return out


def integrator_table(p: Params, repos: dict[str, Path], wd: Path) -> Table:
    ws_dir = write_workstreams(wd / "ws-b3", independent_specs(p.patches, acceptance=()))
    per_run: dict[str, list[float]] = {name: [] for name in repos}
    walls: dict[str, list[float]] = {name: [] for name in repos}
    for _ in range(p.runs):
        for name, path in repos.items():
            res = run_uet(uet_run_args(ws_dir, 4, "--json"), cwd=path, stream_events=True,
                          expect=p.patches)
            st = service_times(res)
            if not st:
                raise RuntimeError(f"B3: no patch committed in {name}: {res.summary}")
            per_run[name].append(statistics.median(st))
            walls[name].append(res.wall)
    stats = {k: Stats.of(v) for k, v in per_run.items()}
    r = ratio(stats["large"].median, stats["small"].median)
    table = Table(
        f"B3 integration cost, end to end: uet run of {p.patches} independent workstreams, "
        "4 workers",
        ["measure", "small", "large", "large / small", "target", "verdict"],
    )
    table.add("integrator time per patch", stats["small"].fmt("ms", 1, 1000),
              stats["large"].fmt("ms", 1, 1000), f"{r:.2f}", "<= 3", verdict(r <= 3))
    ws_small, ws_large = Stats.of(walls["small"]), Stats.of(walls["large"])
    table.add("whole run (wall)", ws_small.fmt(), ws_large.fmt(),
              f"{ratio(ws_large.median, ws_small.median):.2f}", "", "")
    table.notes.append(
        f"per-patch figure = median over the {p.patches} patches of a run, then median "
        f"(min-max) over {p.runs} runs; timestamps are the `time` field of `--json` events.")
    return table


def main(quick: bool = False) -> list[Table]:
    p = params(quick)
    wd = workdir("b3")
    try:
        repos = {}
        sizes = []
        for name, shape in zip(("small", "large"), p.shapes, strict=True):
            repos[name] = make_repo(shape, wd / name)
            files, size = repo_size(repos[name])
            sizes.append(f"{name} = {shape.name}, {files:,} files, {size / 1e6:.0f} MB")
        tables = [merge_table(p, repos), integrator_table(p, repos, wd)]
        for t in tables:
            t.notes.append("; ".join(sizes))
            emit(t)
    finally:
        cleanup(wd)
    return tables
