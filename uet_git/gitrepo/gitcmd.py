"""Starting git: the one command prefix every git process uet runs goes through.

A tool runs inside a worktree of the repository and can write its config (``.git/config``,
``config.worktree``) and hooks. uet's own git must then still run no program the tool planted:
``GIT_BASE`` turns off hooks (``core.hooksPath=/dev/null`` also covers a planted hooks dir),
the fsmonitor daemon/hook, automatic gc and maintenance, and the pager. Diff-making commands
add ``NO_EXTERNAL_DIFF`` (``diff.external`` and textconv drivers are porcelain-only, but cheap
to rule out). Command-line ``-c`` wins over every config file, so a tool cannot override them.

This module sits below ``repo.py`` and ``refs.py`` (both import it), so neither imports the
other to start git.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from uet_git.errors import UetError

MIN_GIT = (2, 39)

# Config that would make git start a program (or block on a terminal); -c beats every file.
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "core.pager=cat",
    "core.quotePath=false",
)
GIT_BASE: list[str] = ["git"] + [a for kv in SAFE_CONFIG for a in ("-c", kv)]
NO_EXTERNAL_DIFF = ("--no-ext-diff", "--no-textconv")


class GitError(UetError):
    """A git command failed or the repository is unusable."""


class HasWorkdir(Protocol):
    """What starting git in a repository needs of it (``Repo`` satisfies it)."""

    @property
    def workdir(self) -> Path: ...


def git_version() -> tuple[int, int, int]:
    try:
        out = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GitError(f"git is not available: {exc}") from exc
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout)
    if not m:
        raise GitError(f"cannot read git version from {out.stdout.strip()!r}")
    return int(m[1]), int(m[2]), int(m[3] or 0)


_checked_paths: set[str | None] = set()


def require_git() -> None:
    """Raise GitError unless the ``git`` on PATH is new enough (asked once per PATH)."""
    path = os.environ.get("PATH")
    if path in _checked_paths:
        return
    v = git_version()
    if v[:2] < MIN_GIT:
        raise GitError(
            f"git {'.'.join(map(str, v))} is too old: uet needs git >= "
            f"{'.'.join(map(str, MIN_GIT))}"
        )
    _checked_paths.add(path)


def run_git(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git ARGS`` (with ``GIT_BASE``) and capture bytes. On failure (with ``check``)
    raise GitError whose message is git's own first stderr line."""
    full_env = None
    if env is not None:
        full_env = {**os.environ, **env}
    proc = subprocess.run(
        [*GIT_BASE, *args],
        cwd=cwd,
        input=input,
        env=full_env,
        capture_output=True,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        first = next((line for line in err if line.strip()), f"exit {proc.returncode}")
        raise GitError(f"git {' '.join(args[:2])}: {first}")
    return proc
