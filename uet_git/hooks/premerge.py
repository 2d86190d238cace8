"""What judges a candidate, read from the run's BASE commit, never from the candidate.

A patch may delete its copy of a hook, ``chmod -x`` it, rewrite it, symlink it to
``/bin/true``, or edit ``uet.toml``: none of that changes what runs on it. ``config_at`` reads
``uet.toml`` as committed in a commit (the run's base), ``collect_hooks`` lists the pre-merge
hooks of the base (``[hooks] pre-merge`` commands first, then the executables committed in
``.uet/hooks/pre-merge.d/`` sorted by name; plain files and symlinks are not hooks), and
``write_hooks`` writes the base's hook directory out of the object database into a directory
outside the candidate's worktree, from where each hook runs with the candidate's worktree as its
working directory.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from uet_git.errors import UetError
from uet_git.gitrepo.odb import read_blob, walk_tree
from uet_git.gitrepo.repo import Repo
from uet_git.spec.load import pydantic_issues
from uet_git.spec.models import Config

HOOK_DIR = ".uet/hooks/pre-merge.d"
CONFIG_FILE = "uet.toml"
_EXECUTABLE = 0o100755
_REGULAR = 0o100644


@dataclass(frozen=True)
class Hook:
    name: str  # `pre-merge[N]` for a uet.toml command, else the hook's path in the base
    command: str | None = None  # a uet.toml command (sh -c in the candidate's worktree)
    path: str | None = None  # a committed hook: its path below HOOK_DIR in the base


def config_at(repo: Repo, commit: str) -> Config:
    """``uet.toml`` as committed in ``commit`` (defaults when it has none). Raises UetError
    (``uet.toml at COMMIT: field: problem``) when it is invalid."""
    raw = read_blob(repo, commit, CONFIG_FILE)
    if raw is None:
        return Config()
    where = f"{CONFIG_FILE} at {commit[:12]}"
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError:
        raise UetError(f"{where}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UetError(f"{where}: invalid TOML: {exc}") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise UetError("; ".join(str(i) for i in pydantic_issues(exc, where, None, Config))
                       ) from None


def collect_hooks(repo: Repo, config: Config, base: str) -> list[Hook]:
    """The pre-merge hooks of a run whose checks are ``config`` and whose base is ``base``."""
    hooks = [Hook(f"pre-merge[{i}]", command=cmd) for i, cmd in enumerate(config.hooks.pre_merge)]
    prefix = f"{HOOK_DIR}/"
    names = sorted(e.path.removeprefix(prefix) for e in walk_tree(repo, base, HOOK_DIR)
                   if e.mode == _EXECUTABLE and "/" not in e.path.removeprefix(prefix)
                   and not e.name.startswith("."))
    hooks.extend(Hook(f"{HOOK_DIR}/{n}", path=n) for n in names)
    return hooks


def write_hooks(repo: Repo, base: str, dest: Path) -> Path:
    """Write ``HOOK_DIR`` of ``base`` (its regular files, so a hook finds the base's copy of a
    helper next to it) into ``dest``, replacing whatever was there; returns ``dest``."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    prefix = f"{HOOK_DIR}/"
    for e in walk_tree(repo, base, HOOK_DIR):
        if e.mode not in (_EXECUTABLE, _REGULAR):
            continue  # symlinks and submodules: never followed out of the base's tree
        data = read_blob(repo, base, e.path)
        if data is None:
            continue
        out = dest / e.path.removeprefix(prefix)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        out.chmod(0o755 if e.mode == _EXECUTABLE else 0o644)
    return dest


def hook_command(hook: Hook, hook_dir: Path) -> str | list[str]:
    """What to run for ``hook`` once ``write_hooks`` wrote the base's hooks to ``hook_dir``."""
    if hook.command is not None:
        return hook.command
    assert hook.path is not None
    return [str(hook_dir / hook.path)]
