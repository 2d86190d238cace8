"""Pre-merge hooks of a candidate: ``[hooks] pre-merge`` commands from uet.toml, then the
executables committed in ``.uet/hooks/pre-merge.d/`` of the candidate tree itself, sorted by
name. Read from the candidate (not the user's checkout) so a patch that changes a hook is
checked by the hook it brings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygit2

from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config

HOOK_DIR = ".uet/hooks/pre-merge.d"


@dataclass(frozen=True)
class Hook:
    name: str
    command: str | list[str]  # str: sh -c; list: argv (relative to the candidate checkout)


def collect_hooks(repo: Repo, config: Config, candidate: str) -> list[Hook]:
    hooks = [Hook(f"pre-merge[{i}]", cmd) for i, cmd in enumerate(config.hooks.pre_merge)]
    pg = repo.pg
    try:
        tree = pg[candidate].peel(pygit2.Tree)
        entry = tree[HOOK_DIR]
    except KeyError:
        return hooks
    sub = pg[entry.id]
    if not isinstance(sub, pygit2.Tree):
        return hooks
    names = sorted(
        e.name for e in sub
        if e.filemode == pygit2.enums.FileMode.BLOB_EXECUTABLE and e.name is not None
        and not e.name.startswith(".")
    )
    hooks.extend(Hook(f"{HOOK_DIR}/{n}", [f"./{HOOK_DIR}/{n}"]) for n in names)
    return hooks


def hook_argv(hook: Hook, checkout: Path) -> str | list[str]:
    """The command to run with ``checkout`` as cwd (argv paths made absolute)."""
    if isinstance(hook.command, str):
        return hook.command
    return [str(checkout / hook.command[0].removeprefix("./")), *hook.command[1:]]
