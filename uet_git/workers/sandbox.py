"""Running a tool inside bubblewrap: it may write its worktree and nothing of the repository
but the objects and that worktree's own admin dir.

The plan (SANDBOX-NOTES.md), in this order because a later mount hides an earlier one:

- ``--ro-bind / /``: everything read-only; ``--dev /dev``, ``--proc /proc``; ``--tmpfs /tmp``
  (a private /tmp);
- the repository's top level (and a separate common git dir) and ``$HOME`` read-only again,
  since the private /tmp would hide them when they are under /tmp; then ``extra_readable``;
- read-write: the worktree, ``<common>/objects`` (its commits' objects), the worktree's admin
  dir ``<common>/worktrees/<id>`` (its HEAD, index and logs), each ``[sandbox] writable`` path
  (``~`` expanded; missing ones skipped) and ``extra_writable`` (e.g. a tool's log dir);
- ``--unshare-pid --die-with-parent``: its own PID namespace, so everything it started dies when
  it exits, and it dies with uet; ``--unshare-net`` when ``[sandbox] network = false``;
- ``--chdir`` the command's working directory.

So refs, config, hooks and info/ of the repository and the user's checkout stay read-only.
The environment passes through, but ``TMPDIR=/tmp`` (the private, writable one). Paths under
/tmp outside the repository are not visible unless named in ``extra_readable`` or
``extra_writable``, except, read-only, the Python running uet and PATH entries under /tmp and
the directory of each program a command names by an absolute /tmp path (``wrap``);
stdin/stdout/stderr are file descriptors opened outside, so the log files
are written whatever the binds.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.worktrees import admin_dir
from uet_git.spec.models import SandboxConfig

BWRAP = "bwrap"

_lock = threading.Lock()
_checked: list[str | None] = []  # [] = not checked yet; [reason or None] afterwards


def available() -> str | None:
    """None when bubblewrap can sandbox a tool here; else the one-line reason it cannot
    (missing, or user namespaces disabled). Checked once per process by running
    ``bwrap --ro-bind / / true``."""
    with _lock:
        if not _checked:
            _checked.append(probe())
        return _checked[0]


def probe() -> str | None:
    """``available()`` without the cache: one run of ``bwrap --ro-bind / / true``."""
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        proc = subprocess.run([exe, "--ro-bind", "/", "/", "true"], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot run: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap does not work here: {lines[-1] if lines else f'exit {proc.returncode}'}"
    return None


@dataclass(frozen=True)
class SandboxPlan:
    """The bubblewrap options for commands run in one worktree (``wrap`` adds the command).
    ``args`` are the read-only part, ``writable`` the binds and flags that must come after it
    (a later mount hides an earlier one: a path made read-only again after a writable bind
    would hide the writable one)."""

    worktree: Path
    args: tuple[str, ...]
    network: bool = True
    writable: tuple[str, ...] = ()

    def wrap(self, argv: Sequence[str], *, cwd: Path) -> list[str]:
        """``argv`` run inside the sandbox in ``cwd``. The directory of a program under /tmp
        that the command names by its absolute path stays visible, read-only, in the private
        /tmp: otherwise a tool kept under /tmp could not even start."""
        named: list[str] = []
        for p in named_tmp_paths(argv):
            named += ["--ro-bind-try", p, p]
        return [BWRAP, *self.args, *named, *self.writable, "--chdir", _real(cwd), "--", *argv]


def named_tmp_paths(argv: Sequence[str]) -> list[str]:
    """The directories under /tmp of the executable files ``argv`` names by absolute path, the
    words of an ``sh -c`` string included (shell syntax it cannot split names nothing)."""
    words = list(argv)
    if len(argv) >= 3 and os.path.basename(argv[0]) in ("sh", "bash", "dash") \
            and argv[1] == "-c":
        with contextlib.suppress(ValueError):
            words += shlex.split(argv[2], comments=True)
    out: list[str] = []
    for word in words:
        for part in word.split("="):  # VAR=/tmp/x and --opt=/tmp/x name a path too
            if not part.startswith("/tmp/"):
                continue
            real = _real(part)
            if not (os.path.isfile(real) and os.access(real, os.X_OK)):
                continue  # data the command names stays private; only programs are shown
            d = os.path.dirname(real)
            if _inside(d, "/tmp") and d != "/tmp" and d not in out:
                out.append(d)
    return out


def _runtime_paths() -> list[str]:
    """What the tools' own commands need from under /tmp whatever they name: the Python running
    uet (a virtualenv in /tmp: acceptance commands run its ``python``) and PATH entries."""
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix,
                  *os.environ.get("PATH", "").split(os.pathsep)]
    out: list[str] = []
    for c in candidates:
        if c and os.path.isabs(c):
            real = _real(c)
            if _inside(real, "/tmp") and real != "/tmp" and real not in out:
                out.append(real)
    return out


def sandbox_for(repo: Repo, worktree: Path, config: SandboxConfig, *,
                extra_writable: Iterable[Path | str] = (),
                extra_readable: Iterable[Path | str] = ()) -> SandboxPlan | None:
    """The plan for tools run in ``worktree`` (a linked worktree of ``repo``), or None when
    ``config.mode`` is ``none`` or bubblewrap is not usable here (``available()`` says why).
    Raises GitError when ``worktree`` is not a registered worktree of ``repo``."""
    if config.mode == "none" or available() is not None:
        return None
    common = _real(repo.common_dir)
    top = _real(repo.workdir)
    args: list[str] = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                       "--tmpfs", "/tmp"]
    readable = [top]
    if not _inside(common, top):
        readable.append(common)
    home = os.environ.get("HOME")
    if home and os.path.isabs(home):
        readable.append(_real(home))
    readable += _runtime_paths()
    readable += [_real(p) for p in extra_readable]
    for p in readable:
        args += ["--ro-bind-try", p, p]
    rw: list[str] = []
    writable = [_real(worktree), os.path.join(common, "objects"),
                _real(admin_dir(repo, Path(worktree)))]
    for p in writable:
        rw += ["--bind", p, p]
    for p in [*(os.path.expanduser(w) for w in config.writable), *map(os.fspath,
                                                                       extra_writable)]:
        rp = _real(p)
        rw += ["--bind-try", rp, rp]
    rw += ["--setenv", "TMPDIR", "/tmp", "--unshare-pid", "--die-with-parent"]
    if not config.network:
        rw.append("--unshare-net")
    return SandboxPlan(Path(_real(worktree)), tuple(args), config.network, tuple(rw))


def _real(p: Path | str) -> str:
    return os.path.realpath(os.fspath(p))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
