"""`uet run [PATH] [--jobs N] [--target BRANCH] [--only IDS] [--dry-run] [--deterministic]
[--land end|continuous|never] [--keep-worktrees] [--json] [--quiet]`.

While it runs, ``uet status`` in another terminal shows what each worker does (the live-state
file, ``engine/live.py``); the steps' timings go to the ledger for ``uet report``.

Exit 0 when every workstream is committed and landed, 1 when anything is quarantined or blocked
(or the target moved and nothing landed), 2 invalid input, 130 interrupted."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from uet_git.cli.completespec import complete_spec_list
from uet_git.cli.render import Reporter, show_dry_run
from uet_git.commands.run import execute_run
from uet_git.engine.live import LiveRun
from uet_git.engine.options import RunOptions
from uet_git.gitrepo import Repo
from uet_git.gitrepo.repo import GitError


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--jobs", "-j", type=int, default=None,
              help="Parallel workers (default: UET_JOBS, PIPELINE_MAX_WORKERS, uet.toml, 4).")
@click.option("--target", metavar="BRANCH",
              help="Branch to land on (default: uet.toml [run] target, else the checked-out "
                   "branch).")
@click.option("--only", "only", multiple=True, metavar="IDS", shell_complete=complete_spec_list,
              help="Run only these workstreams (comma-separated or repeated) and what they "
                   "depend on.")
@click.option("--dry-run", is_flag=True, help="Print the plan and what would run; write nothing.")
@click.option("--deterministic", is_flag=True,
              help="Integrate in plan order (ties by id): same inputs, same final tree.")
@click.option("--land", "land", type=click.Choice(["end", "continuous", "never"]), default=None,
              help="When to fast-forward the target: at the end (default), after each commit, "
                   "or never (`uet land` later).")
@click.option("--keep-worktrees", is_flag=True, help="Keep the worktrees and logs afterwards.")
@click.option("--fresh-worktrees", is_flag=True,
              help="Remove the worktrees at the end (default: [worktree] keep = true keeps "
                   "them for the next run; `uet gc` removes idle ones).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line: each transition and step (tool, acceptance, "
                   "verify: started/finished), then a summary object.")
@click.option("--quiet", "-q", is_flag=True,
              help="No live log: only the final summary (with --json: only the summary).")
@click.option("--executor", metavar="ADDRESS",
              help="Run the tools on a Dask cluster: dask://HOST:PORT (or tls://HOST:PORT); "
                   "default: local threads ([executor] address in uet.toml). Needs "
                   "uet-git[distributed]. Anyone who can reach the scheduler can run code "
                   "on its workers.")
@click.option("--remote", metavar="URL",
              help="With --executor: a git URL the workers fetch from and push their inbox "
                   "refs to (file://, ssh, https; default on loopback: this repository).")
@click.option("--serve", metavar="HOST:PORT",
              help="With --executor: serve this repository to the workers (uet serve, a "
                   "token per run) at HOST:PORT.")
@click.option("--insecure", is_flag=True,
              help="With --executor: allow plain TCP to a scheduler off loopback.")
@click.option("--checks-from-checkout", is_flag=True,
              help="Take [tools], [hooks], [verify], [breaker] and [sandbox] from the "
                   "checkout's uet.toml, uncommitted changes included (default: from the "
                   "base commit).")
def cmd(paths: tuple[Path, ...], jobs: int | None, target: str | None, only: tuple[str, ...],
        dry_run: bool, deterministic: bool, land: str | None, keep_worktrees: bool,
        fresh_worktrees: bool, as_json: bool, quiet: bool, checks_from_checkout: bool,
        executor: str | None = None, remote: str | None = None, serve: str | None = None,
        insecure: bool = False) -> None:
    """Run the workstreams found in PATH (files or directories; default: [run] workstreams of
    uet.toml, else workstreams/) in parallel worktrees, in dependency order; verify and
    integrate each patch, then land the result on the target branch.

    Exit 0 when everything is committed and landed, 1 when anything is quarantined or blocked
    or nothing could land, 2 invalid input, 130 interrupted (`uet resume` continues)."""
    repo = _open_repo(paths)
    options = RunOptions(
        jobs=jobs, target=target, only=list(only) or None, dry_run=dry_run,
        deterministic=deterministic, land=land, keep_worktrees=keep_worktrees,
        fresh_worktrees=fresh_worktrees,
        output="json" if as_json else "auto", paths=[p.resolve() for p in paths] or None,
        checks_from_checkout=checks_from_checkout,
        executor=executor, remote=remote, serve=serve, insecure=insecure,
    )
    reporter = Reporter(options.output, quiet=quiet and not dry_run)
    live = LiveRun(repo, reporter)
    reporter.facts = live.facts
    try:
        result = execute_run(repo, options, live)
    finally:
        live.close()
    if result.dry_run is not None:
        show_dry_run(reporter, result.dry_run)
    sys.exit(result.exit_code)


def _open_repo(paths: tuple[Path, ...]):  # type: ignore[no-untyped-def]

    try:
        return Repo.open(".")
    except GitError:
        if not paths:
            raise
        first = paths[0] if paths[0].is_dir() else paths[0].parent
        return Repo.open(first)
