"""What a caller asks of a run (``RunOptions``) and what it gets back (``RunResult``).

``jobs`` and ``land`` default to None, meaning "resolve": the command line wins, then the
environment (``UET_JOBS`` / legacy ``PIPELINE_MAX_WORKERS``), then ``uet.toml``, then the
built-in default. Passing a value (as the contract's ``jobs=4`` / ``land="end"``) pins it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.engine.dryrun import DryRunView
from uet_git.errors import UetError
from uet_git.spec.models import Config

LAND_MODES = ("end", "continuous", "never")
DEFAULT_JOBS = 4


@dataclass
class RunOptions:
    jobs: int | None = None
    target: str | None = None
    only: list[str] | None = None
    dry_run: bool = False
    deterministic: bool = False
    land: str | None = None
    keep_worktrees: bool = False
    fresh_worktrees: bool = False  # remove the worktrees at the end ([worktree] keep = false)
    output: str = "auto"
    paths: list[Path] | None = None
    checks_from_checkout: bool = False  # the user's uncommitted uet.toml checks, on request
    # Where attempts run (over [executor]; commands/executor.py): a Dask scheduler address,
    # how its workers reach the repository (a git URL, or `uet serve` at HOST:PORT), and
    # plain TCP off loopback on request.
    executor: str | None = None
    remote: str | None = None
    serve: str | None = None
    insecure: bool = False


@dataclass
class RunResult:
    run_id: str | None
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    landed: bool = False
    message: str = ""
    dry_run: DryRunView | None = None  # what a dry run would do, for the caller to show


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UetError(f"{name}: must be a positive integer, got {raw!r}")
    return value


def resolve_jobs(cli_jobs: int | None, config: Config,
                 env: Mapping[str, str] | None = None) -> int:
    """CLI > ``UET_JOBS`` > ``PIPELINE_MAX_WORKERS`` > ``uet.toml [run] jobs`` > 4."""
    env = os.environ if env is None else env
    if cli_jobs is not None:
        if cli_jobs < 1:
            raise UetError(f"--jobs {cli_jobs}: must be at least 1")
        return cli_jobs
    for name in ("UET_JOBS", "PIPELINE_MAX_WORKERS"):
        value = _env_int(env, name)
        if value is not None:
            return value
    if "jobs" in config.run.model_fields_set:
        return config.run.jobs
    return DEFAULT_JOBS


def resolve_land(cli_land: str | None, config: Config) -> str:
    land = cli_land or config.run.land
    if land not in LAND_MODES:
        raise UetError(f"--land {land!r}: must be one of {', '.join(LAND_MODES)}")
    return land


def dry_run_requested(options: RunOptions, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    legacy = env.get("PIPELINE_DRY_RUN", "").strip().lower()
    return options.dry_run or legacy in ("1", "true", "yes", "on")
