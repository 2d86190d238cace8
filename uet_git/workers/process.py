"""Running one tool: its own session, stdin closed, output to files, and no process left behind.

A tool runs in a new session and process group (``start_new_session``), so ``killpg`` ends what
it started. A descendant that calls ``setsid()`` itself (a daemon, a double fork) leaves that
group, and one that also clears its environment drops the ``UET_PROC_TOKEN`` every tool gets;
``procfs.ToolWatch`` finds those too (this process is a child subreaper, so they are re-parented
below it; the tool's tree is sampled while it runs; what works in its directory is taken).

The sweep runs after a timeout or cancel, and also after a normal exit: a tool's background
children (a dev server left running) must not outlive it, because its worktree is about to be
reset for the next workstream. With a ``sandbox`` plan (``sandbox.py``) the command runs inside
bubblewrap, in its own PID namespace: everything it started dies with it, and after a normal
exit the namespace's init (which bwrap names on ``--info-fd``) stands for the sweep: once it
has no child, or has exited, nothing of the command lives (``_init_gone``). The objects it wrote
(into its private object directory) are imported into the repository once bwrap has exited,
so the caller finds them there as if the command had written them itself; what the import
rejects is said at the end of its stderr log.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uet_git.gitrepo.objimport import Imported
from uet_git.ledger.evidence import MAX_EVIDENCE
from uet_git.workers.procfs import (
    TOKEN_VAR,
    ToolWatch,
    adopt,
    become_subreaper,
    children_of,
    kill_tool,
    read_stat,
    reap_orphans,
)

if TYPE_CHECKING:
    from uet_git.workers.sandbox import SandboxPlan

__all__ = ["TOKEN_VAR", "ProcResult", "become_subreaper", "read_tail", "run_process"]
# Inherited from a caller running inside git (a hook), these would point a tool's git commands
# at another repository than its worktree; they pass only when given in ``env`` explicitly.
_REPO_LOCAL_VARS = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_COMMON_DIR", "GIT_PREFIX",
    "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE",
})
_POLL = 0.05
# How often the tool's process tree is sampled while it runs (a daemon seen once is found
# after it escapes): every 10 ms at first, where tools start their background processes, then
# less often, up to every 100 ms. A pidfd wakes the wait at the tool's exit, so this costs no
# latency; a sample costs ~0.1-0.3 ms of CPU.
_SAMPLE_FIRST = 0.01
_SAMPLE = 0.1


@dataclass
class ProcResult:
    returncode: int | None
    timed_out: bool
    cancelled: bool
    duration: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled and not self.error


def run_process(
    cmd: str | list[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    timeout: float | None,
    stdout_path: Path,
    stderr_path: Path,
    stdin_path: Path | None = None,
    grace: float = 5.0,
    cancel: threading.Event | None = None,
    sandbox: SandboxPlan | None = None,
) -> ProcResult:
    """Run ``cmd`` (a string runs under ``sh -c``, a list is an argv) in ``cwd``.

    ``env`` is laid over ``os.environ`` (minus repository-locating ``GIT_DIR``-like variables).
    stdin comes from ``stdin_path`` or /dev/null; stdout and stderr go to the given files
    (truncated). On timeout or when ``cancel`` is set, the whole
    process tree gets SIGTERM, then SIGKILL after ``grace`` seconds. Never raises for a missing
    executable or working directory: that is ``returncode=None`` with ``error`` set.
    With ``sandbox`` the command runs inside that bubblewrap plan (``sandbox.sandbox_for``).
    """
    argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    start = time.monotonic()
    if not argv:
        return ProcResult(None, False, False, 0.0, "empty command")
    if not Path(cwd).is_dir():
        return ProcResult(None, False, False, 0.0, f"working directory missing: {cwd}")
    if cancel is not None and cancel.is_set():
        return ProcResult(None, False, True, 0.0, "cancelled")
    become_subreaper()
    token = uuid.uuid4().hex
    inherited = {k: v for k, v in os.environ.items() if k not in _REPO_LOCAL_VARS}
    full_env = _no_auto_gc({**inherited, **env, TOKEN_VAR: token})
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    how: dict[str, Any] = {
        "cwd": cwd, "full_env": full_env, "timeout": timeout, "start": start,
        "stdout_path": stdout_path, "stderr_path": stderr_path, "stdin_path": stdin_path,
        "grace": grace, "cancel": cancel, "token": token}
    if sandbox is not None:
        # Inside bwrap a missing executable is bwrap's own exit 1: say it as without one.
        problem = _exec_problem(argv[0], full_env.get("PATH"), Path(cwd))
        if problem is not None:
            return ProcResult(None, False, False, time.monotonic() - start, problem)
        argv = sandbox.wrap(argv, cwd=Path(cwd))
        try:
            leftover = sandbox.start_objects()
        except OSError as exc:
            return ProcResult(None, False, False, time.monotonic() - start,
                              f"cannot make the sandbox's object directory: {exc}")
        try:
            res = _start_and_wait(argv, cmd, sandboxed=True, **how)
        finally:
            imported = sandbox.finish_objects()  # the sandbox has exited: nothing writes now
        return _after_import(res, [i for i in (leftover, imported) if i is not None],
                             stderr_path)
    return _start_and_wait(argv, cmd, sandboxed=False, **how)


def _after_import(res: ProcResult, imports: list[Imported], stderr_path: Path) -> ProcResult:
    """A sandboxed command's result once its objects are imported: what the import says (forged
    objects rejected, a problem) goes to the end of its stderr log, the evidence; a problem
    that stopped the import fails the command, since its commits may be incomplete."""
    lines = [f"uet: {i.summary()}\n" for i in imports if i.summary()]
    if lines:
        with contextlib.suppress(OSError), open(stderr_path, "a") as err:
            err.writelines(lines)
    problem = next((i.problem for i in imports if i.problem), None)
    if problem is not None and res.error is None:
        res.error = f"the objects it wrote could not be imported: {problem}"
    return res


def _start_and_wait(argv: list[str], cmd: str | list[str], *, cwd: str | os.PathLike[str],
                    full_env: dict[str, str], timeout: float | None, start: float,
                    stdout_path: Path, stderr_path: Path, stdin_path: Path | None,
                    grace: float, cancel: threading.Event | None, token: str,
                    sandboxed: bool) -> ProcResult:
    """Start ``argv`` (already wrapped when ``sandboxed``) and wait for it and everything it
    started (``run_process``)."""
    # A sandbox's PID namespace init (bwrap's child) as bwrap reports it (``--info-fd``):
    # waited for through a pidfd once bwrap exits, instead of the sweep (``_init_gone``).
    info_r, info_w = os.pipe() if sandboxed and _unshares_pid(argv) else (-1, -1)
    if info_w >= 0:
        argv = [argv[0], "--info-fd", str(info_w), *argv[1:]]
    try:
        started = _start(argv, cwd=cwd, full_env=full_env, start=start,
                         stdout_path=stdout_path, stderr_path=stderr_path,
                         stdin_path=stdin_path, pass_fds=(info_w,) if info_w >= 0 else ())
    finally:
        if info_w >= 0:
            os.close(info_w)  # bwrap holds its own copy
    try:
        if isinstance(started, ProcResult):
            return started
        return _wait(started, cmd, timeout=timeout, start=start, stderr_path=stderr_path,
                     grace=grace, cancel=cancel, token=token, sandboxed=sandboxed,
                     workdir=cwd, info=info_r)
    finally:
        if info_r >= 0:
            os.close(info_r)


def _unshares_pid(argv: list[str]) -> bool:
    """Whether the bwrap command ``argv`` gives its command its own PID namespace."""
    own = argv[:argv.index("--")] if "--" in argv else argv
    return "--unshare-pid" in own


def _start(argv: list[str], *, cwd: str | os.PathLike[str], full_env: dict[str, str],
           start: float, stdout_path: Path, stderr_path: Path, stdin_path: Path | None,
           pass_fds: tuple[int, ...]) -> subprocess.Popen[bytes] | ProcResult:
    """The started process, or why it could not start."""
    try:
        with (
            open(stdout_path, "wb") as out,
            open(stderr_path, "wb") as err,
            open(stdin_path, "rb") if stdin_path is not None else _devnull() as inp,
        ):
            try:
                return subprocess.Popen(
                    argv, cwd=cwd, env=full_env, stdin=inp, stdout=out, stderr=err,
                    start_new_session=True, close_fds=True, pass_fds=pass_fds,
                )
            except FileNotFoundError:
                return ProcResult(None, False, False, time.monotonic() - start,
                                  f"executable not found: {argv[0]}")
            except PermissionError:
                # execvp reports EACCES when any PATH entry is unreadable, even if the
                # executable is simply missing: say which it is.
                name = argv[0]
                missing = "/" not in name and shutil.which(name, path=full_env.get("PATH")) is None
                return ProcResult(None, False, False, time.monotonic() - start,
                                  f"executable not found: {name}" if missing
                                  else f"not executable: {name}")
    except OSError as exc:  # stdin file missing, log dir unwritable
        return ProcResult(None, False, False, time.monotonic() - start, f"cannot start: {exc}")


def _wait(proc: subprocess.Popen[bytes], cmd: str | list[str], *, timeout: float | None,
          start: float, stderr_path: Path, grace: float, cancel: threading.Event | None,
          token: str, sandboxed: bool, workdir: str | os.PathLike[str], info: int
          ) -> ProcResult:
    """``_start_and_wait`` once ``proc`` started: wait for it, then for everything it started."""
    timed_out = cancelled = False
    deadline = None if timeout is None else start + timeout
    exited = _ExitWaiter(proc)
    watch = ToolWatch(proc.pid, token, workdir=workdir)
    watch.register()
    sample = _SAMPLE_FIRST
    try:
        try:
            while True:
                wait_for = min(sample, _POLL) if cancel is not None else sample
                sample = min(sample * 1.5, _SAMPLE)
                if deadline is not None:
                    wait_for = max(0.0, min(wait_for, deadline - time.monotonic()))
                if exited(wait_for):
                    break
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    break
                if not sandboxed:  # in a sandbox, its PID namespace holds everything
                    watch.sample()
        except BaseException:
            # KeyboardInterrupt in the waiting thread: still leave nothing behind.
            kill_tool(watch, grace=min(grace, 1.0), poll=proc.poll)
            proc.wait()
            raise
        finally:
            exited.close()
        # A bwrap killed by a signal may have left its init setting up: swept as before.
        if timed_out or cancelled or (proc.returncode or 0) < 0 \
                or not _init_gone(info, proc.pid, min(grace, 1.0)):
            # The tool may have exited already; the sweep also ends whatever it left running.
            kill_tool(watch, grace=grace if (timed_out or cancelled) else min(grace, 1.0),
                      poll=proc.poll)
        else:
            reap_orphans()
    finally:
        watch.unregister()
    returncode = proc.wait()
    error = None
    if timed_out:
        error = f"timed out after {timeout:g} s"
    elif cancelled:
        error = "cancelled"
    elif returncode == 127 and isinstance(cmd, str):
        # sh's own status for a command it could not find (or not execute).
        tail = read_tail(stderr_path, 400).decode(errors="replace").strip()
        error = "command not found (exit 127)" + (f": {tail.splitlines()[-1]}" if tail else "")
    return ProcResult(returncode, timed_out, cancelled, time.monotonic() - start, error)


def _init_gone(info: int, leader: int, timeout: float) -> bool:
    """After bwrap (``leader``) exited: whether its PID namespace's init (the ``child-pid`` it
    wrote to ``info``) has exited too, waited for up to ``timeout`` s and reaped when it was
    left to us (the subreaper). The kernel ends every process of a namespace before its init
    becomes a zombie, and none leaves a PID namespace: then nothing the command started lives,
    which the /proc sweep (``kill_tool``) would otherwise establish, a scan of every descendant
    and sleeps while the init dies (bwrap exits when the command does, its init a moment
    later, killed by ``--die-with-parent``). False when not sure: the caller sweeps."""
    if info < 0:
        return False
    try:
        os.set_blocking(info, False)
        data = os.read(info, 4096)  # bwrap has exited: what it wrote is all there
        child = json.loads(data.decode()).get("child-pid") if data else None
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(child, int) or child <= 1:
        return False
    try:
        fd = os.pidfd_open(child)
    except ProcessLookupError:
        return True  # gone and reaped (by bwrap): its namespace ended before it
    except (AttributeError, OSError):
        return False
    try:
        p = read_stat(child)
        if p is None or p.sid != leader:
            # Its pid reused after it was reaped: by something outside the tool's session, so
            # the init (of that session) is gone. Unless we cannot read it at all.
            return p is not None
        if children_of(child) == []:
            # Every process of a PID namespace descends from its init (orphans are given to
            # it): with no child it waits for nothing, so nothing of the command lives and it
            # is exiting by itself (unmounting the sandbox takes it a few ms more; nothing
            # waits for that). Reaped later, by whichever command comes next. It is killed
            # all the same, through the pidfd (no pid reuse): a tool able to trace its
            # namespace's init could have it fork after this look, and a killed init takes
            # its whole namespace with it, a child started later included.
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            adopt(p)
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            return False  # still there: the sweep kills it
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
        return True
    finally:
        os.close(fd)


class _ExitWaiter:
    """``waiter(seconds) -> bool``: wait up to ``seconds`` for ``proc`` to exit (and reap it).

    Through a pidfd (Linux >= 5.3): the wait ends the moment the process exits.
    ``Popen.wait(timeout)`` instead polls with sleeps doubling from 1 ms, so a 3 ms command was
    noticed at ~7 ms and a 10 ms one at ~15 ms: several ms lost per tool, acceptance command
    and hook. Falls back to ``Popen.wait`` where pidfds are missing. The pid cannot be reused
    before we reap it (it is our unreaped child), so the pidfd is the right process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._fd: int | None = None
        try:
            self._fd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            self._fd = None

    def __call__(self, seconds: float) -> bool:
        if self._fd is not None:
            try:
                poller = select.poll()
                poller.register(self._fd, select.POLLIN)
                if not poller.poll(max(0, int(seconds * 1000 + 0.999))):
                    return False
            except OSError:
                pass  # fall through to Popen.wait with the timeout
            else:
                self._proc.wait()
                return True
        try:
            self._proc.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _no_auto_gc(env: dict[str, str]) -> dict[str, str]:
    """Keep git's automatic gc/maintenance from firing in a tool's commits (it would pack the
    run's refs and compete with the workers; GIT-NOTES.md): ``gc.auto=0`` and
    ``maintenance.auto=false`` appended to the ``GIT_CONFIG_COUNT`` list (git >= 2.31)."""
    try:
        n = int(env.get("GIT_CONFIG_COUNT", "0"))
    except ValueError:
        return env
    for key, value in (("gc.auto", "0"), ("maintenance.auto", "false")):
        env[f"GIT_CONFIG_KEY_{n}"] = key
        env[f"GIT_CONFIG_VALUE_{n}"] = value
        n += 1
    env["GIT_CONFIG_COUNT"] = str(n)
    return env


def _exec_problem(name: str, path: str | None, cwd: Path) -> str | None:
    """Why ``name`` cannot be executed (as ``run_process`` says it unsandboxed), or None."""
    if "/" in name:
        exe = Path(name) if os.path.isabs(name) else cwd / name
        if not exe.exists():
            return f"executable not found: {name}"
        return None if os.access(exe, os.X_OK) else f"not executable: {name}"
    return None if shutil.which(name, path=path) else f"executable not found: {name}"


def _devnull():
    return open(os.devnull, "rb")


def read_tail(path: str | os.PathLike[str], limit: int = MAX_EVIDENCE) -> bytes:
    """At most about ``limit`` bytes of a log: all of it if small, else head + marker + tail
    (by default as much as the ledger keeps of one piece of evidence)."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        return b""
    with open(p, "rb") as f:
        if size <= limit:
            return f.read()
        head_n = limit // 4
        tail_n = limit - head_n
        head = f.read(head_n)
        f.seek(size - tail_n)
        tail = f.read()
    omitted = size - head_n - tail_n
    return head + f"\n... [{omitted} bytes omitted] ...\n".encode() + tail
