"""B6 — the sandbox's cost per command start: a trivial command (``true``), a git read
(``git status -s``) and a git write (``git commit --allow-empty``: its objects go to the private
object directory and are imported after the command) run through uet's process runner in a
worktree, without a sandbox, in bubblewrap as uet runs it, in bubblewrap without the network,
and in the sandbox as it was before the private object directory (``<common>/objects`` bound
writable, no import, capabilities kept: the same plan with only that changed), interleaved
(a, b, c, d, a, ...) so the machine's drift hits each alike. Skipped, with the reason, where
bubblewrap cannot run."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import zlib
from pathlib import Path

from bench.common import Stats, Table, cleanup, emit, git, measure_interleaved, workdir
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import run_process

COMMANDS: tuple[tuple[str, list[str] | str], ...] = (
    ("true", ["true"]),
    ("git status -s", ["git", "status", "-s"]),
    ("git commit (1 object)", "git -c user.name=b -c user.email=b@b commit -q --allow-empty -m b"),
)


def writable_store_plan(plan: sandbox.SandboxPlan) -> sandbox.SandboxPlan:
    """``plan`` as the sandbox was before the private object directory: the real store bound
    writable (where the worktree's binds are), no import, no ``--cap-drop``."""
    rw: list[str] = []
    it = iter(plan.writable)
    for arg in it:
        if arg in ("--cap-drop", "--cap-add"):
            next(it)
        else:
            rw.append(arg)
    return dataclasses.replace(plan, writable=("--bind", plan.objects, plan.objects, *rw),
                               private="")


def main(quick: bool = False) -> list[Table]:
    runs = 10 if quick else 60
    table = Table("B6 sandbox: cost per command start (uet's process runner, one worktree)",
                  ["command", "no sandbox", "bwrap", "bwrap, no network",
                   "bwrap, writable store (before)", "bwrap - none", "bwrap - before"])
    reason = sandbox.available()
    if reason is not None:
        table.notes.append(f"skipped: {reason}")
        return [emit(table)]
    wd = workdir("b6")
    try:
        path = wd / "repo"
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        git(path, "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q",
            "--allow-empty", "-m", "init")
        repo = Repo.open(path)
        pool = WorktreePool(repo, size=1)
        wt = pool.acquire(git(path, "rev-parse", "HEAD"))
        bwrap = sandbox.sandbox_for(repo, wt.path, SandboxConfig())
        assert bwrap is not None
        plans = {"none": None, "bwrap": bwrap,
                 "nonet": sandbox.sandbox_for(repo, wt.path, SandboxConfig(network=False)),
                 "before": writable_store_plan(bwrap)}

        def runner(plan: sandbox.SandboxPlan | None, argv: list[str] | str):  # type: ignore[no-untyped-def]
            def go() -> None:
                res = run_process(argv, cwd=wt.path, env={}, timeout=60,
                                  stdout_path=wd / "out", stderr_path=wd / "err", sandbox=plan)
                if res.returncode != 0:
                    raise RuntimeError(f"B6: {argv} failed: {Path(wd / 'err').read_text()}")
            return go

        for label, argv in COMMANDS:
            for plan in plans.values():  # warm-up
                runner(plan, argv)()
            stats = measure_interleaved({k: runner(p, argv) for k, p in plans.items()}, runs)
            table.add(label, *(stats[k].fmt("ms", 1, 1000) for k in plans),
                      _pairwise(stats["none"], stats["bwrap"]).fmt("ms", 1, 1000),
                      _pairwise(stats["before"], stats["bwrap"]).fmt("ms", 1, 1000))
        store = _store_costs(bwrap, runs)
        pool.release(wt)
        pool.close(remove=True)
        table.notes.append(f"{runs} runs of each, interleaved; median (min-max); the last two "
                           "columns are pairwise differences, run by run.")
        table.notes.append("of which the private object directory, in process (no bwrap): "
                           f"nothing written {store['empty'].fmt('ms', 2, 1000)}, one loose "
                           f"object written {store['one'].fmt('ms', 2, 1000)} (import and "
                           "removal of the used directory).")
    finally:
        cleanup(wd)
    return [emit(table)]


def _pairwise(a: Stats, b: Stats) -> Stats:
    """b - a, run by run (the interleaving makes each pair one moment of the machine)."""
    return Stats.of(y - x for x, y in zip(a.samples, b.samples, strict=True))


def _store_costs(plan: sandbox.SandboxPlan, runs: int) -> dict[str, Stats]:
    """``start_objects`` + ``finish_objects`` alone: after a command that wrote nothing, and
    after one that wrote one loose object (written here as git writes it: zlib of the header
    and content, named by its hash)."""
    count = iter(range(10**9))

    def empty() -> None:
        plan.start_objects()
        plan.finish_objects()

    def one() -> float:
        plan.start_objects()
        data = f"b6 object {next(count)}\n".encode()
        raw = b"blob %d\0" % len(data) + data
        oid = hashlib.sha1(raw).hexdigest()
        obj = Path(plan.private) / oid[:2] / oid[2:]
        obj.parent.mkdir(exist_ok=True)
        obj.write_bytes(zlib.compress(raw))
        t0 = time.perf_counter()
        done = plan.finish_objects()
        if done.written != 1:
            raise RuntimeError(f"B6: the object was not imported: {done}")
        return time.perf_counter() - t0

    return measure_interleaved({"empty": empty, "one": one}, runs)
