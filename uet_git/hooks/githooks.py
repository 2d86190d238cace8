"""Git hooks that consult the ledger: `uet hooks install|uninstall`.

Two hooks, both calling ``uet check`` (through the absolute path of the Python interpreter that
installed them, so they work without ``uet`` on PATH):
- ``pre-merge-commit``: the commits being merged that HEAD does not have. git 2.39 has not
  written MERGE_HEAD yet when this hook runs; it exports ``GITHEAD_<oid>`` for every merged head,
  which the hook reads (MERGE_HEAD is the fallback). git runs this hook only when a merge
  creates a merge commit: a fast-forward merge or a conflicted merge committed later skips it;
  ``pre-push`` still checks those commits before they leave the repository.
- ``pre-push``: for each pushed ref, ``remote..local``, or for a new branch the commits not on
  any remote-tracking ref. Pushing the ledger itself (``refs/uet/*``) is not checked.

An existing hook is never overwritten: it is CHAINED. Install renames it to
``<hook>.uet-chained`` and the uet hook runs it first with the same arguments and input,
stopping with its exit code when it fails. Uninstall removes the uet hook and renames the
chained one back, so the hooks directory is exactly as before. Hooks go to the directory git
uses: ``core.hooksPath`` if set, else the common git dir's ``hooks/``.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from uet_git.errors import UetError
from uet_git.gitrepo import Repo

MARKER = "# uet-hook: installed by `uet hooks install`"
CHAIN_SUFFIX = ".uet-chained"
HOOKS = ("pre-merge-commit", "pre-push")

_HEADER = """#!/bin/sh
{marker} ({name}); remove with `uet hooks uninstall`.
# Refuses uet patches the ledger did not commit (quarantined, dropped, unknown): `uet check`.
UET_PYTHON={python}
chained="$0{suffix}"
if [ ! -x "$UET_PYTHON" ]; then
  echo "uet hook: $UET_PYTHON is gone; run 'uet hooks install' again (or uninstall)" >&2
  exit 1
fi
"""

_PRE_MERGE = """\
if [ -x "$chained" ]; then
  "$chained" "$@" || exit $?
fi
heads=$(env | sed -n 's/^GITHEAD_\\([0-9a-f]\\{40,64\\}\\)=.*/\\1/p')
if [ -z "$heads" ]; then
  mh=$(git rev-parse --git-path MERGE_HEAD)
  [ -f "$mh" ] && heads=$(cat "$mh")
fi
[ -n "$heads" ] || exit 0
# shellcheck disable=SC2086
exec "$UET_PYTHON" -m uet_git check -q -- $heads --not HEAD
"""

_PRE_PUSH = """\
input=$(cat)
if [ -x "$chained" ]; then
  printf '%s\\n' "$input" | "$chained" "$@" || exit $?
fi
printf '%s\\n' "$input" | {
  status=0
  while read -r local_ref local_oid remote_ref remote_oid; do
    [ -n "$local_oid" ] || continue
    case "$local_ref" in refs/uet/*) continue ;; esac
    case "$local_oid" in *[!0]*) ;; *) continue ;; esac
    known=no
    case "$remote_oid" in
      *[!0]*) git cat-file -e "$remote_oid^{commit}" 2>/dev/null && known=yes ;;
    esac
    if [ "$known" = yes ]; then
      "$UET_PYTHON" -m uet_git check -q -- "$remote_oid..$local_oid" || status=1
    else
      "$UET_PYTHON" -m uet_git check -q -- "$local_oid" --not --remotes || status=1
    fi
  done
  exit $status
}
"""


def hooks_dir(repo: Repo) -> Path:
    """Where git looks for hooks: ``core.hooksPath`` as the user's config sets it (relative to
    the worktree top; uet's own git runs with it overridden on the command line, which is not
    the user's setting), else the common git dir's ``hooks``."""
    proc = repo.git("config", "--show-scope", "--get-all", "core.hooksPath", check=False)
    values = [line.partition("\t")[2] for line in proc.stdout.decode().splitlines()
              if line.partition("\t")[0] != "command"]
    if not values or not values[-1]:
        return repo.common_dir / "hooks"
    p = Path(values[-1]).expanduser()
    return p if p.is_absolute() else (repo.workdir / p)


def hook_script(name: str, python: str | None = None) -> str:
    header = _HEADER.format(marker=MARKER, name=name, python=shlex.quote(python or sys.executable),
                            suffix=CHAIN_SUFFIX)
    body = _PRE_MERGE if name == "pre-merge-commit" else _PRE_PUSH
    return header + body


def is_ours(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return MARKER.encode() in f.read(4096)
    except OSError:
        return False


def install(repo: Repo, python: str | None = None) -> list[str]:
    """Install both hooks; returns what was done, one line each. Raises UetError (and changes
    nothing) when a hook cannot be chained."""
    d = hooks_dir(repo)
    plans: list[tuple[str, Path, bool]] = []
    for name in HOOKS:
        path = d / name
        chained = d / (name + CHAIN_SUFFIX)
        exists = path.exists() or path.is_symlink()
        if exists and not is_ours(path) and (chained.exists() or chained.is_symlink()):
            raise UetError(f"{path}: cannot chain this hook, {chained} already exists; move one "
                           "of them away and run `uet hooks install` again")
        plans.append((name, path, exists and not is_ours(path)))
    d.mkdir(parents=True, exist_ok=True)
    done: list[str] = []
    for name, path, chain in plans:
        was_ours = is_ours(path)
        if chain:
            os.replace(path, d / (name + CHAIN_SUFFIX))
        tmp = path.with_name(f".{name}.uet-tmp")
        tmp.write_text(hook_script(name, python))
        tmp.chmod(0o755)
        os.replace(tmp, path)
        if chain:
            done.append(f"installed {path} (your existing hook now runs first, from "
                        f"{name}{CHAIN_SUFFIX})")
        elif was_ours:
            done.append(f"updated {path}")
        else:
            done.append(f"installed {path}")
    inside = [repo.workdir.resolve(), repo.common_dir.resolve()]
    if not any(d.resolve().is_relative_to(p) for p in inside):
        done.append(f"note: {d} (core.hooksPath) is outside this repository: every repository "
                    "using it now runs these hooks")
    return done


def uninstall(repo: Repo) -> list[str]:
    """Remove the uet hooks and put chained hooks back; returns what was done."""
    d = hooks_dir(repo)
    done: list[str] = []
    for name in HOOKS:
        path = d / name
        chained = d / (name + CHAIN_SUFFIX)
        if (path.exists() or path.is_symlink()) and not is_ours(path):
            done.append(f"left {path} alone: not a uet hook")
            continue
        if path.exists():
            path.unlink()
            done.append(f"removed {path}")
        if chained.exists() or chained.is_symlink():
            os.replace(chained, path)
            done.append(f"restored {path} (the hook uet had chained)")
    if not done:
        done.append(f"no uet hooks in {d}")
    return done
