"""Small helpers shared by command modules: output formatting, and where the project is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from uet_git.gitrepo.repo import run_git


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False, default=str))


def echo_jsonl(obj: Any) -> None:
    click.echo(json.dumps(obj, separators=(",", ":"), default=str))


def table(rows: list[list[str]], headers: list[str]) -> str:
    """A plain left-aligned text table."""
    cols = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cols) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


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
