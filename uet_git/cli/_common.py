"""Small helpers shared by command modules: JSON output, and where the project is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from uet_git.gitrepo.repo import run_git


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def project_root(cwd: Path) -> tuple[Path, bool]:
    """``(root, in_git)``: the top of the git worktree containing ``cwd``, else ``cwd``."""
    try:
        proc = run_git(["rev-parse", "--show-toplevel"], cwd=cwd, check=False)
    except OSError:
        return cwd, False
    top = proc.stdout.decode(errors="replace").strip()
    if proc.returncode == 0 and top:
        return Path(top), True
    return cwd, False
