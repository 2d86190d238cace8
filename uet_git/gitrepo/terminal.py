"""git's own views for a person at a terminal (``uet diff``): unlike every other git process
uet starts (``gitcmd.GIT_BASE``), these keep the user's pager and colours, because the output
is for the user to read. Hooks and the fsmonitor stay off (a view must start no program a
tool could have planted as a hook), and external diff drivers and textconv are off, so the
diff shown is git's own."""

from __future__ import annotations

import subprocess
import sys

from uet_git.gitrepo.gitcmd import NO_EXTERNAL_DIFF, GitError
from uet_git.gitrepo.repo import Repo

VIEW_CONFIG = ("core.hooksPath=/dev/null", "core.fsmonitor=false", "gc.auto=0",
               "maintenance.auto=false")
VIEWS = frozenset({"show", "diff", "log"})


def show_to_terminal(repo: Repo, command: str, *args: str) -> int:
    """Run ``git COMMAND --no-ext-diff --no-textconv ARGS`` (``show``, ``diff`` or ``log``) for
    the user: attached to the terminal when stdout is one (git then pages with the user's
    pager and colours as configured), else its output copied to ``sys.stdout`` (no pager, no
    colour unless the user's config forces it, like git itself). Returns git's exit code;
    a failure to start git or a git error is a GitError with git's first line."""
    if command not in VIEWS:
        raise ValueError(f"not a view command: {command}")
    argv = ["git", *(a for kv in VIEW_CONFIG for a in ("-c", kv)), command,
            *NO_EXTERNAL_DIFF, *args]
    if _is_terminal():
        proc = subprocess.run(argv, cwd=repo.workdir)
        return proc.returncode
    done = subprocess.run(argv, cwd=repo.workdir, capture_output=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {command}: {err[0] if err else f'exit {done.returncode}'}")
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    if out is None:
        sys.stdout.write(done.stdout.decode(errors="replace"))
    else:
        out.write(done.stdout)
        out.flush()
    return 0


def _is_terminal() -> bool:
    try:
        return sys.stdout.isatty() and sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False

