"""Shell completion of the workstream ids a new run would read (``uet run --only a,<TAB>``):
apart from ``cli/complete.py`` because it loads the workstream files (pydantic), which the
light reading commands never import."""

from __future__ import annotations

from pathlib import Path

import click
from click.shell_completion import CompletionItem

from uet_git.cli._common import project_root
from uet_git.spec.load import config_issues, default_paths, load_workstreams


def complete_spec_list(ctx: click.Context, param: click.Parameter, incomplete: str
                       ) -> list[CompletionItem]:
    """``uet run --only a,<TAB>``: the ids of the workstream files a run would read (the
    default ``[run] workstreams`` of uet.toml, else workstreams/); the last part of a comma
    list completes."""
    try:
        root, _ = project_root(Path.cwd())
        config, _ = config_issues(root)
        ids = [ws.id for ws in load_workstreams(default_paths(root, config)).workstreams]
    except Exception:  # unreadable files: nothing to complete
        return []
    head, _, last = incomplete.rpartition(",")
    given = set(head.split(",")) if head else set()
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + ws) for ws in ids if ws.startswith(last) and ws not in given]
