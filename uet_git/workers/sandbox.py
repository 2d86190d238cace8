"""Running a tool inside bubblewrap: it may write its worktree and that worktree's own admin
dir, new objects into a private object directory, and nothing else of the repository.

The plan (SANDBOX-NOTES.md), in this order because a later mount hides an earlier one:

- ``--ro-bind / /``: everything read-only; ``--dev /dev``, ``--proc /proc``; ``--tmpfs /tmp``
  (a private /tmp);
- the repository's top level (and a separate common git dir), ``$HOME`` and ``extra_readable``
  read-only again when they are under /tmp, /dev or /proc, which those mounts would hide
  (elsewhere ``/`` shows them read-only already);
- read-write: the worktree, the worktree's admin dir ``<common>/worktrees/<id>`` (its HEAD,
  index and logs; not ``commondir``, ``gitdir``, ``locked`` nor the worktree's ``.git`` file,
  which tie it to this repository and are bound read-only again), each ``[sandbox] writable``
  path (``~`` expanded; missing ones skipped) and ``extra_writable`` (e.g. a tool's log dir);
- the object store, last so no writable path can uncover it: ``<common>/objects`` is replaced by
  a private, empty object directory (``<common>/uet/sandbox-objects/<id>``, outside the
  worktree and its admin dir, so the tool cannot rename or replace it), whose
  ``info/alternates`` names the real store, mounted read-only at ``STORE_MOUNT``. Every git the
  command starts (whatever its environment: no ``GIT_OBJECT_DIRECTORY`` to unset) reads all
  objects and writes new ones into the private directory; no existing object, loose or packed,
  can be changed or deleted;
- ``--unshare-pid --die-with-parent``: its own PID namespace, so everything it started dies when
  it exits, and it dies with uet; ``--unshare-net`` when ``[sandbox] network = false``;
  ``--cap-drop ALL``: run as root, bwrap would otherwise keep the capabilities, and
  ``mount -o remount,rw`` would undo every read-only bind (root keeps only
  ``CAP_DAC_OVERRIDE``, ``CAP_FOWNER`` and ``CAP_CHOWN``, which no read-only mount yields to);
- ``--chdir`` the command's working directory.

So refs, config, hooks, info/ and the objects of the repository and the user's checkout stay
read-only. ``process.run_process`` brackets each sandboxed command with ``start_objects`` (a
fresh private directory; a leftover one, from a uet killed while a command ran, is imported
first) and ``finish_objects``: after the whole sandbox has exited, the new objects are imported
into the real store by ``gitrepo.objimport`` (each re-hashed, existing ones skipped, forged ones
rejected; never a file copied by name), then the directory is emptied (its object directories
removed; made again whole when the command changed anything else; making and removing
directories costs milliseconds). One command at a time per worktree (the pool's guarantee), so
one private directory per worktree.

Mode ``none`` (or no usable bwrap) enforces none of this: a tool's git writes the real store
directly and could overwrite or delete existing objects; only the tamper guard's checks of refs
and config remain (reliability.md's threat model).

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
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.gitrepo.objimport import (
    Imported,
    empty_store,
    forget_missing,
    import_objects,
    is_fresh_store,
    new_store,
    real_alternates,
    remove_store,
)
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.worktrees import admin_dir
from uet_git.spec.models import SandboxConfig

BWRAP = "bwrap"
# Where the real object store is seen, read-only, inside the sandbox (in its private /tmp, where
# bwrap can make the mount point; the private object directory's alternates name it).
STORE_MOUNT = "/tmp/.uet-objects"
# Run as root, bwrap keeps every capability: CAP_SYS_ADMIN remounts any read-only bind
# writable, CAP_MKNOD makes a disk's device node, CAP_DAC_READ_SEARCH opens any inode by
# handle through a writable mount. All go; root keeps only what makes it the owner of its files
# (permission bits do not stop it, as outside), none of which gets past a read-only mount.
# Not root: the sandbox has no capabilities anyway, and a setuid bwrap refuses --cap-*.
_CAPS: tuple[str, ...] = (
    ("--cap-drop", "ALL", "--cap-add", "CAP_DAC_OVERRIDE", "--cap-add", "CAP_FOWNER",
     "--cap-add", "CAP_CHOWN") if os.geteuid() == 0 else ())

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
    # The real object store (host path), the private object directory that replaces it inside
    # the sandbox, and the store's own alternates (absolute): "" = no object binds.
    objects: str = ""
    private: str = ""
    alternates: tuple[str, ...] = ()
    index: str = ""  # the worktree's index (in its admin dir)
    repo: Repo | None = field(default=None, compare=False, repr=False)

    def wrap(self, argv: Sequence[str], *, cwd: Path) -> list[str]:
        """``argv`` run inside the sandbox in ``cwd``. The directory of a program under /tmp
        that the command names by its absolute path stays visible, read-only, in the private
        /tmp: otherwise a tool kept under /tmp could not even start."""
        named: list[str] = []
        for p in named_tmp_paths(argv):
            named += ["--ro-bind-try", p, p]
        store: list[str] = []
        if self.private:
            store = ["--bind", self.private, self.objects, "--ro-bind", self.objects, STORE_MOUNT]
        return [BWRAP, *self.args, *named, *self.writable, *store, "--chdir", _real(cwd), "--",
                *argv]

    def start_objects(self) -> Imported | None:
        """Before a command: a fresh private object directory. One left by a uet killed while a
        command ran is imported first (its objects may be all a kept worktree's HEAD and index
        have); returns that import, or None when there was none. Raises OSError when the
        directory cannot be made."""
        if not self.private or self.repo is None:
            return None
        private = Path(self.private)
        if is_fresh_store(private, self._alternates()):
            return None  # the last command wrote nothing: reuse it as it is
        leftover = import_objects(self.repo, private) if private.exists() else None
        new_store(private, self._alternates())
        return leftover

    def finish_objects(self) -> Imported:
        """After the command and its whole sandbox exited: import what it wrote (re-hashed,
        ``gitrepo.objimport``), then empty the private directory. Never raises."""
        if not self.private or self.repo is None:
            return Imported()
        private = Path(self.private)
        done = import_objects(self.repo, private)
        if done.rejected_count and self.index:
            # The index may name a forged (so absent) blob with the file's stat: make the
            # snapshot hash the file instead of writing a tree that names a missing object.
            forget_missing(self.repo, Path(self.index), self.worktree)
        # Emptied for the next command (kept as it is when the command wrote nothing, the
        # common case), unless the import stopped: the next start_objects tries again.
        if done.problem is None:
            try:
                empty_store(private, self._alternates())
            except OSError as exc:
                done.problem = f"cannot empty {private}: {exc}"
        return done

    def _alternates(self) -> list[str]:
        return [STORE_MOUNT, *self.alternates]


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
    uet (a virtualenv in /tmp: acceptance commands run its ``python``) and PATH entries. Resolved
    once per value of PATH (a realpath per entry, twice per workstream, was most of a plan's
    cost)."""
    candidates = (sys.prefix, sys.base_prefix, sys.exec_prefix,
                  *os.environ.get("PATH", "").split(os.pathsep))
    cached = _RUNTIME.get(candidates)
    if cached is not None:
        return list(cached)
    out: list[str] = []
    for c in candidates:
        if c and os.path.isabs(c):
            real = _real(c)
            if _inside(real, "/tmp") and real != "/tmp" and real not in out:
                out.append(real)
    _RUNTIME[candidates] = tuple(out)  # one assignment: safe for other threads
    return out


_RUNTIME: dict[tuple[str, ...], tuple[str, ...]] = {}


@dataclass(frozen=True)
class _Parts:
    """What a worktree's plan binds but the caller's own extra paths (a fresh log dir per
    command), with the resolved paths the plan names."""

    worktree: str
    admin: str
    objects: str
    private: str
    head: tuple[str, ...]  # read-only binds before the caller's extra readable paths
    rw: tuple[str, ...]  # writable binds before the caller's extra writable paths
    flags: tuple[str, ...]  # what follows them


# Keyed by everything a _Parts is made from. Its paths are uet's own (the repository, a slot
# and its admin dir, HOME, the configured ones), which a sandboxed command cannot replace (their
# parents are read-only inside), so their resolved form stays what it was; the admin dir is
# looked up (and checked) at each call, so a slot rebuilt under another admin dir gets a new
# entry. Resolving them again for every command was most of a plan's cost.
_PARTS: dict[tuple[object, ...], _Parts] = {}
_MAX_PARTS = 256  # slots x configs of one process; past it the cache starts again


def sandbox_for(repo: Repo, worktree: Path, config: SandboxConfig, *,
                extra_writable: Iterable[Path | str] = (),
                extra_readable: Iterable[Path | str] = ()) -> SandboxPlan | None:
    """The plan for tools run in ``worktree`` (a linked worktree of ``repo``), or None when
    ``config.mode`` is ``none`` or bubblewrap is not usable here (``available()`` says why).
    Raises GitError when ``worktree`` is not a registered worktree of ``repo``."""
    if config.mode == "none" or available() is not None:
        return None
    admin = admin_dir(repo, Path(worktree))
    key = (repo.common_dir, repo.workdir, os.fspath(worktree), admin, config.network,
           tuple(config.writable), os.environ.get("HOME"), tuple(_runtime_paths()))
    parts = _PARTS.get(key)
    if parts is None:
        if len(_PARTS) >= _MAX_PARTS:
            _PARTS.clear()
        parts = _PARTS[key] = _plan_parts(repo, Path(worktree), admin, config, key[7])
    # Read at each call: a file of the repository's, which the user may change.
    alternates = tuple(real_alternates(Path(parts.objects)))
    readable = [_real(p) for p in extra_readable]
    readable += alternates
    args = list(parts.head)
    for p in (p for p in readable if _hidden(p)):  # else visible through / already
        args += ["--ro-bind-try", p, p]
    extra: list[str] = []
    for p in extra_writable:
        rp = _real(p)
        extra += ["--bind-try", rp, rp]
    return SandboxPlan(Path(parts.worktree), tuple(args), config.network,
                       (*parts.rw, *extra, *parts.flags), objects=parts.objects,
                       private=parts.private,
                       alternates=alternates, index=os.path.join(parts.admin, "index"),
                       repo=repo)


def _plan_parts(repo: Repo, worktree: Path, admin: Path, config: SandboxConfig,
                runtime: Sequence[str]) -> _Parts:
    common = _real(repo.common_dir)
    top = _real(repo.workdir)
    head: list[str] = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                       "--tmpfs", "/tmp"]
    readable = [top]
    if not _inside(common, top):
        readable.append(common)
    home = os.environ.get("HOME")
    if home and os.path.isabs(home):
        readable.append(_real(home))
    readable += runtime
    # Only what the sandbox's own /tmp, /dev and /proc hide: elsewhere `--ro-bind / /` shows
    # it read-only already, and every bind costs bwrap a read of the mount table.
    for p in (p for p in readable if _hidden(p)):
        head += ["--ro-bind-try", p, p]
    rw: list[str] = []
    real_admin, real_wt = _real(admin), _real(worktree)
    for p in (real_wt, real_admin):
        rw += ["--bind", p, p]
    # What ties the worktree to this repository stays read-only inside those writable dirs: a
    # tool that rewrote `commondir`/`gitdir` (or the worktree's `.git` file) would point uet's
    # own git commands in that worktree at a repository of its making.
    for p in (os.path.join(real_admin, "commondir"), os.path.join(real_admin, "gitdir"),
              os.path.join(real_admin, "locked"), os.path.join(real_wt, ".git")):
        rw += ["--ro-bind-try", p, p]
    for p in (os.path.expanduser(w) for w in config.writable):
        rp = _real(p)
        rw += ["--bind-try", rp, rp]
    flags = ["--setenv", "TMPDIR", "/tmp", "--unshare-pid", "--die-with-parent", *_CAPS]
    if not config.network:
        flags.append("--unshare-net")
    return _Parts(real_wt, real_admin, os.path.join(common, "objects"),
                  str(private_objects_dir(repo, Path(real_admin))),
                  tuple(head), tuple(rw), tuple(flags))


def private_objects_dir(repo: Repo, admin: Path) -> Path:
    """The private object directory of the worktree whose admin dir is ``admin``: under uet's
    own directory of the common dir, which a sandboxed command sees read-only."""
    return Path(_real(repo.common_dir)) / "uet" / "sandbox-objects" / Path(admin).name


def recover_objects(repo: Repo, worktree: Path) -> Imported | None:
    """Import the objects a command in ``worktree`` wrote when uet was killed before it could
    import them (``resume`` may call it before it snapshots a kept worktree), then delete the
    private directory; None when there is none. Never raises for a worktree that is gone."""
    try:
        private = private_objects_dir(repo, admin_dir(repo, Path(worktree)))
    except (GitError, OSError):
        return None
    if not private.exists():
        return None
    done = import_objects(repo, private)
    if done.problem is None:
        with contextlib.suppress(OSError):
            remove_store(private)
    return done


def _real(p: Path | str) -> str:
    return os.path.realpath(os.fspath(p))


def _hidden(path: str) -> bool:
    """Whether the sandbox's own mounts (a private /tmp, a fresh /dev and /proc) hide
    ``path``: only then is it bound again to be seen."""
    return any(_inside(path, m) for m in ("/tmp", "/dev", "/proc"))


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")
