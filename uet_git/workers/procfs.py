"""Finding processes through /proc: a tool's whole process tree (escapees included), the
processes working inside a directory, and the tools a killed run left behind.

A tool runs in its own session and process group, and every tool gets a unique
``UET_PROC_TOKEN`` in its environment, which its descendants inherit. This process becomes a
child subreaper (``become_subreaper``: ``prctl(PR_SET_CHILD_SUBREAPER)``), so an orphan of a
tool (a daemon whose parent exited) is re-parented to us, not to init, and stays findable
below us. A ``ToolWatch`` finds, for one tool:

1. every process of the tool's session or group, every process carrying its token, and their
   descendants;
2. every process once seen in that set, wherever it is now (a ``setsid env -i`` daemon: it
   left the session, dropped the token, and was re-parented to us when its parent exited);
3. every process below us outside our own session whose cwd or root is under the tool's
   working directory (an escapee that was never seen).

uet's own children are never taken: they are in our session, or (ref transactions, in their own
session so a Ctrl-C cannot cut one) work elsewhere. What this cannot find: a daemon that
escaped between two samples (every 10 to 100 ms, process.py) AND left the tool's directory: /proc
does not say which of our children were re-parented to us, and taking every child we did not
start with ``run_process`` would take other threads' subprocesses (and their exit status). The
pool still refuses to reset a worktree anything works in (``processes_under``: cwd, root or
executable there, or a file open there for whatever may be a tool's leftover), and the sandbox
(``sandbox.py``, its own PID namespace) makes every descendant die with the tool.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

TOKEN_VAR = "UET_PROC_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36
_POLL = 0.05
# Up to this many open files a process's descriptors are read whatever it is: cheaper than
# telling whether it may be a tool's (its stat, its session leader's, their environments).
_FEW_FDS = 16

_subreaper_lock = threading.Lock()
_subreaper_done = False


def _forget_subreaper() -> None:
    # prctl's flag is not inherited across fork: a forked child is no subreaper until it asks
    # (and until then my_descendants, which relies on it, gives way to a scan of /proc). A new
    # lock: another thread of the parent may have held the old one at the fork.
    global _subreaper_done, _subreaper_lock
    _subreaper_done = False
    _subreaper_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_subreaper)


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux, once per process, best effort)."""
    global _subreaper_done
    with _subreaper_lock:
        if _subreaper_done:
            return True
        try:
            import ctypes  # only here: the one prctl call of the process

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                return False
        except (OSError, AttributeError):
            return False
        _subreaper_done = True
        return True


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    starttime: int  # with the pid, identifies a process across pid reuse
    comm: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.starttime)


def _read(path: bytes) -> bytes:
    """The whole file ``path`` (raises OSError). Plain ``os`` calls, no ``Path`` or ``open``:
    the sweeps read a few /proc files per process many times a second while tools run."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def _read_proc(pid: int | bytes, name: bytes) -> bytes | None:
    """``/proc/PID/NAME``, or None when it cannot be read."""
    pid_b = pid if isinstance(pid, bytes) else str(pid).encode()
    try:
        return _read(b"/proc/" + pid_b + b"/" + name)
    except OSError:
        return None


def read_stat(pid: int) -> Proc | None:
    data = _read_proc(pid, b"stat")
    if data is None:
        return None
    # comm (field 2) may contain spaces and parens: split after the last ')'; rest[k] is field k+3.
    close = data.rfind(b")")
    rest = data[close + 2:].split()
    comm = data[data.find(b"(") + 1:close].decode(errors="replace")
    try:
        return Proc(pid, int(rest[1]), int(rest[2]), int(rest[3]), rest[0].decode(),
                    int(rest[19]), comm)
    except (IndexError, ValueError):
        return None


def all_procs() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return procs
    for name in names:
        if name.isdigit():
            p = read_stat(int(name))
            if p is not None:
                procs[p.pid] = p
    return procs


def children_of(pid: int) -> list[int] | None:
    """Direct children of process ``pid`` (zombies included), from every thread's
    ``/proc/PID/task/TID/children``; None when a file cannot be read."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    out: list[int] = []
    for tid in tids:
        try:
            out += [int(c) for c in _read(f"/proc/{pid}/task/{tid}/children".encode()).split()]
        except FileNotFoundError:
            continue  # the thread exited: its children went to another thread (or to us)
        except (OSError, ValueError):
            return None
    return out


def my_descendants() -> dict[int, Proc] | None:
    """Every process below this one, or None when the process tree cannot be walked here
    (``/proc/PID/task/TID/children`` needs CONFIG_PROC_CHILDREN) or we are not a subreaper.

    As a child subreaper, every descendant of a tool we started stays below us whatever it
    does (``setsid``, a double fork). So this walk finds everything a full /proc scan would,
    at a cost in proportion to our own descendants (measured: 83 processes on the machine,
    1.4 ms -> ~0.1 ms per sweep)."""
    if not _subreaper_done:
        return None
    me = os.getpid()
    kids = children_of(me)
    if kids is None:
        return None  # no such file on this kernel: the caller scans all of /proc
    procs: dict[int, Proc] = {}
    stack: list[int] = []
    while True:
        for c in kids or ():  # None: a descendant that exited meanwhile
            if c in procs or c == me:
                continue
            p = read_stat(c)
            if p is not None:
                procs[c] = p
                stack.append(c)
        if not stack:
            return procs
        kids = children_of(stack.pop())


def _read_environ(pid: int | bytes) -> bytes | None:
    """``/proc/PID/environ``, or None when it cannot be read (gone, a zombie: ESRCH, not ours
    to read); empty for a kernel thread."""
    return _read_proc(pid, b"environ")


def _has_entry(environ: bytes, marker: bytes) -> bool:
    """``marker`` is one whole ``NAME=VALUE`` entry of ``environ`` (NUL-separated)."""
    return b"\0" + marker + b"\0" in b"\0" + environ + b"\0"


def has_token(pid: int, marker: bytes) -> bool:
    environ = _read_environ(pid)
    return environ is not None and _has_entry(environ, marker)


def _readlink(path: str) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return target.removesuffix(" (deleted)")


def _under(target: str | None, root: str) -> bool:
    return target is not None and (target == root or target.startswith(root.rstrip("/") + "/"))


def _lives_under(pid: int, root: str) -> bool:
    """Process ``pid`` has its cwd or root under ``root``."""
    return (_under(_readlink(f"/proc/{pid}/cwd"), root)
            or _under(_readlink(f"/proc/{pid}/root"), root))


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


_UET_MARKERS = (b"\0" + TOKEN_VAR.encode() + b"=", b"\0UET_RUN=")


def _carries_uet(pid: int) -> bool:
    """The environment of ``pid`` has a uet tool's token or run id (a tool, or something a
    tool started without clearing its environment)."""
    environ = _read_environ(pid)
    return environ is not None and any(m in b"\0" + environ for m in _UET_MARKERS)


class _Sweep:
    """The /proc reads of one sweep, each done at most once: a process's stat, whether it is
    below this process (its parent chain, memoised), whether a session leader may be a
    tool's."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self._stats: dict[int, Proc | None] = {}
        self._mine: dict[int, bool] = {self.me: True, 0: False, 1: False}
        self.leaders: dict[int, bool] = {}

    def stat(self, pid: int) -> Proc | None:
        if pid not in self._stats:
            self._stats[pid] = read_stat(pid)
        return self._stats[pid]

    def mine(self, pid: int) -> bool:
        chain: list[int] = []
        while pid not in self._mine and len(chain) < 4096:
            chain.append(pid)
            p = self.stat(pid)
            pid = p.ppid if p is not None else 0
        verdict = self._mine.get(pid, False)
        for c in chain:
            self._mine[c] = verdict
        return verdict


def could_be_a_tools(p: Proc, stat: Callable[[int], Proc | None], mine: Callable[[int], bool],
                     cache: dict[int, bool] | None = None) -> bool:
    """Whether ``p`` may be something a tool left behind, so its open files are worth reading
    (``stat``: a pid's Proc or None when gone; ``mine``: whether a pid is below this process;
    ``cache``: session leader -> verdict, shared by the calls of one sweep).

    A tool runs in a session of its own, so whatever it leaves is: below this process (the
    subreaper keeps every orphan of our tools there); re-parented to init (a uet killed before
    it, with no subreaper above); carrying a uet token; a session leader (``setsid``); or in a
    session whose leader is gone (the tool's, a double fork's) or is one of the above (a
    killed run's tool or daemon, still running, and what it started). Everything else is in a
    live session no tool started (a shell and its jobs, a test runner's workers with hundreds
    of open files each), and reading its descriptors is the cost this avoids."""
    if p.sid == p.pid or p.ppid == 1 or mine(p.pid):
        return True
    if cache is not None and p.sid in cache:
        leader_may = cache[p.sid]
    else:
        leader = stat(p.sid)
        leader_may = leader is None or leader.ppid == 1 or mine(leader.pid) \
            or _carries_uet(leader.pid)
        if cache is not None:
            cache[p.sid] = leader_may
    return leader_may or _carries_uet(p.pid)


def processes_under(path: str | os.PathLike[str]) -> list[int]:
    """Live processes (any on the machine but this one) whose cwd, root or executable is
    ``path`` or below it, or that hold a file open below it. (Zombies have none of these: their
    links do not read.)

    Every process's executable, cwd and root are read, and the open files of a process with
    few; a process with more than ``_FEW_FDS`` open files is read only when it may be a tool's
    leftover (``could_be_a_tools``), so the sweep's cost does not grow with other people's
    processes (a test runner's workers hold hundreds of files each)."""
    root = _real(path)
    sweep = _Sweep()
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found: list[int] = []
    for name in names:
        if not name.isdigit() or int(name) == sweep.me:
            continue
        pid = int(name)
        if _under(_readlink(f"/proc/{pid}/exe"), root) or _lives_under(pid, root):
            found.append(pid)
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        if len(fds) > _FEW_FDS:
            p = sweep.stat(pid)
            if p is None or not could_be_a_tools(p, sweep.stat, sweep.mine, sweep.leaders):
                continue
        if any(_under(_readlink(f"/proc/{pid}/fd/{fd}"), root) for fd in fds):
            found.append(pid)
    return sorted(found)


def ancestors(pid: int) -> set[int]:
    """``pid`` and the processes above it up to (not including) init."""
    out: set[int] = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        p = read_stat(pid)
        if p is None:
            break
        pid = p.ppid
    return out


# --- one tool's processes ----------------------------------------------------------------------

# The tools being run now (leader pid -> watch): a process seen by another live tool is that
# tool's, and another tool's leader is never taken.
_live: dict[int, ToolWatch] = {}
_live_lock = threading.Lock()


@dataclass
class ToolWatch:
    """The processes of one tool started as ``leader`` with ``token`` in ``workdir``."""

    leader: int
    token: str
    workdir: str | None = None
    seen: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.workdir is not None:
            self.workdir = _real(self.workdir)

    def register(self) -> None:
        with _live_lock:
            _live[self.leader] = self

    def unregister(self) -> None:
        with _live_lock:
            _live.pop(self.leader, None)

    def sample(self) -> None:
        """Remember the tool's current processes, so they are found after they escape."""
        self.seen.update(p.key for p in self.find(escapees=False))

    def find(self, *, escapees: bool = True) -> list[Proc]:
        """Every process (zombies included) of the tool: rules 1-3 of the module doc, or only
        1-2 without ``escapees`` (cheaper: no cwd or open-file reads)."""
        mine = my_descendants()
        procs = mine if mine is not None else all_procs()
        me = os.getpid()
        my_sid = os.getsid(0)
        marker = f"{TOKEN_VAR}={self.token}".encode()
        with _live_lock:
            others = [w for w in _live.values() if w.leader != self.leader]
        leaders = {w.leader for w in others}
        found: set[int] = set()
        for p in procs.values():
            if p.pid == me or p.pid in leaders:
                continue
            if p.sid == self.leader or p.pgid == self.leader or p.key in self.seen:
                found.add(p.pid)
            elif p.sid == my_sid or p.sid in leaders or p.pgid in leaders or p.state == "Z":
                # Ours (git), another tool's (no process can join a session it was not born
                # in), or a zombie we cannot judge.
                continue
            elif has_token(p.pid, marker):
                found.add(p.pid)
            elif escapees and self.workdir is not None and _lives_under(p.pid, self.workdir):
                # Not open files: a child another thread is starting holds copies of our own
                # descriptors (the tool's logs) until it execs.
                found.add(p.pid)
        # Descendants of anything found (a child that cleared its environment and left the
        # session), except what another live tool has seen as its own.
        theirs = set().union(*(w.seen for w in others)) if others else set()
        children: dict[int, list[int]] = {}
        for p in procs.values():
            children.setdefault(p.ppid, []).append(p.pid)
        stack = list(found)
        while stack:
            for c in children.get(stack.pop(), []):
                if c not in found and c != me and c not in leaders \
                        and procs[c].key not in theirs:
                    found.add(c)
                    stack.append(c)
        return [procs[pid] for pid in sorted(found)]


# Processes identified as a tool's descendants (pid -> start time). Only these are ever reaped
# here: a zombie re-parented to us (the subreaper) that we never identified is left alone, so
# another thread's subprocess never loses its exit status to us.
_adopted: dict[int, int] = {}
_adopted_lock = threading.Lock()


def _scan(watch: ToolWatch) -> list[int]:
    """Live pids of the tool; records all of them (but the Popen leader) for reaping."""
    procs = watch.find()
    with _adopted_lock:
        for p in procs:
            if p.pid != watch.leader:
                _adopted[p.pid] = p.starttime
    return [p.pid for p in procs if p.state != "Z"]


def adopt(p: Proc) -> None:
    """Reap ``p``, re-parented to us, once it has exited (``reap_orphans``)."""
    with _adopted_lock:
        _adopted[p.pid] = p.starttime


def reap_orphans() -> None:
    """Reap the zombies among the recorded tool descendants that were re-parented to us; forget
    the ones that are gone (reaped by their own parent, or by init)."""
    me = os.getpid()
    with _adopted_lock:
        for pid, start in list(_adopted.items()):
            p = read_stat(pid)
            if p is None or p.starttime != start:
                del _adopted[pid]
            elif p.state == "Z" and p.ppid == me:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                del _adopted[pid]


def _signal_all(pids: Iterable[int], leader: int | None, sig: int) -> None:
    if leader is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(leader, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_tool(watch: ToolWatch, *, grace: float = 5.0,
              poll: Callable[[], object] | None = None) -> None:
    """TERM every process of the tool, wait up to ``grace`` s, then KILL what is left, until
    nothing of it remains (it may fork while being killed). ``poll`` reaps the leader (its
    ``Popen.poll``). Reaps adopted orphans."""
    pids = _scan(watch)
    if pids:
        _signal_all(pids, watch.leader, signal.SIGTERM)
        end = time.monotonic() + grace
        # Most processes are gone within a few ms of the signal (a sandbox's namespace within
        # ~5 ms): look again soon, then every _POLL.
        pause = 0.002
        while pids and time.monotonic() < end:
            time.sleep(pause)
            pause = min(pause * 2, _POLL)
            if poll is not None:
                poll()
            reap_orphans()
            pids = _scan(watch)
        for _ in range(100):
            if not pids:
                break
            _signal_all(pids, watch.leader, signal.SIGKILL)
            time.sleep(0.01)
            if poll is not None:
                poll()
            reap_orphans()
            pids = _scan(watch)
    reap_orphans()


def kill_pids(find: Callable[[], list[int]], *, grace: float = 2.0) -> list[int]:
    """TERM what ``find()`` returns, then KILL what is left after ``grace`` s; returns the
    pids first found. Never this process or its ancestors."""
    spare = ancestors(os.getpid())

    def live() -> list[int]:
        return [p for p in find() if p not in spare]

    # Each look is a scan of all of /proc (the environ of every process, for stop_stale):
    # the first round signals what the first look found, the second what the last look of
    # the wait left; nothing found (a resume's usual case) costs one scan.
    found = pids = live()
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0)):
        if not pids:
            break
        _signal_all(pids, None, sig)
        end = time.monotonic() + wait
        while True:
            reap_orphans()
            pids = live()
            if not pids or time.monotonic() >= end:
                break
            time.sleep(_POLL)
    return found


def stop_stale(run: str, grace: float = 2.0) -> list[int]:
    """Processes a killed ``uet`` left running for run ``run`` (its tools, in their own
    sessions, outlive it): found by ``UET_RUN=RUN`` in their environment, terminated, then
    killed; returns their pids. They would otherwise keep writing into worktrees the resumed
    run is about to reuse. A shell a tool left open, from which this resume was typed (an
    ancestor of this process), is spared."""
    marker = f"UET_RUN={run}".encode()

    def find() -> list[int]:
        # Only the environment of each process is read, not its stat: a zombie's does not
        # read (ESRCH), so no zombie is taken, as with a look at its state.
        try:
            names = os.listdir(b"/proc")
        except OSError:
            return []
        found: list[int] = []
        for name in names:
            if name.isdigit():
                environ = _read_environ(name)
                if environ and _has_entry(environ, marker):
                    found.append(int(name))
        return sorted(found)

    return kill_pids(find, grace=grace)
