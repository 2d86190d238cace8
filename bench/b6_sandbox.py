"""B6 — the sandbox's cost per command start: one trivial command (``true``) and one git
command (``git status -s``) run through uet's process runner in a worktree, without a sandbox,
in bubblewrap, and in bubblewrap without the network, interleaved (a, b, c, a, b, c, ...) so
the machine's drift hits each alike. Skipped, with the reason, where bubblewrap cannot run."""

from __future__ import annotations

from pathlib import Path

from bench.common import Stats, Table, cleanup, emit, git, measure_interleaved, workdir
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import run_process


def main(quick: bool = False) -> list[Table]:
    runs = 10 if quick else 60
    table = Table("B6 sandbox: cost per command start (uet's process runner, one worktree)",
                  ["command", "no sandbox", "bwrap", "bwrap, no network", "bwrap - none"])
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
        plans = {"none": None,
                 "bwrap": sandbox.sandbox_for(repo, wt.path, SandboxConfig()),
                 "nonet": sandbox.sandbox_for(repo, wt.path, SandboxConfig(network=False))}

        def runner(plan: sandbox.SandboxPlan | None, argv: list[str]):  # type: ignore[no-untyped-def]
            def go() -> None:
                res = run_process(argv, cwd=wt.path, env={}, timeout=60,
                                  stdout_path=wd / "out", stderr_path=wd / "err", sandbox=plan)
                if res.returncode != 0:
                    raise RuntimeError(f"B6: {argv} failed: {Path(wd / 'err').read_text()}")
            return go

        for label, argv in (("true", ["true"]), ("git status -s", ["git", "status", "-s"])):
            for plan in plans.values():  # warm-up
                runner(plan, argv)()
            stats = measure_interleaved({k: runner(p, argv) for k, p in plans.items()}, runs)
            extra = Stats.of(b - a for a, b in zip(stats["none"].samples, stats["bwrap"].samples,
                                                     strict=True))
            table.add(label, stats["none"].fmt("ms", 1, 1000), stats["bwrap"].fmt("ms", 1, 1000),
                      stats["nonet"].fmt("ms", 1, 1000), extra.fmt("ms", 1, 1000))
        pool.release(wt)
        pool.close(remove=True)
        table.notes.append(f"{runs} runs of each, interleaved; median (min-max); the last column "
                           "is the pairwise difference, run by run.")
    finally:
        cleanup(wd)
    return [emit(table)]
