"""Shared fixtures: real git repositories in tmp_path, and the uet command.

``uet()`` runs the command in this process through click's test runner (the same ``main()``
the installed entry point calls, so exit codes and the one-line ``uet: ...`` errors are the
real ones). A command given a crash point (``CRASH_VARS``: it ends with ``os._exit`` there, as
a ``kill -9`` would) runs in a forked copy of this process (``uet_forked``): a process of its
own that dies, without the ~0.5 s start of a new interpreter importing uet again.
``uet(..., subprocess=True)`` / ``uet_proc()`` runs ``python -m uet_git`` for the tests that
need a fresh process: a signal, a terminal, a tool that hangs, what a new interpreter imports,
or state a process keeps once set (signal handlers, the subreaper flag)."""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import io
import locale
import os
import select
import shutil
import signal
import stat
import struct
import subprocess as sp
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from xdist.scheduler import LoadScopeScheduling

from uet_git.cli import main

# pytest keeps each test module's assertion-rewritten code in __pycache__ unless
# PYTHONDONTWRITEBYTECODE is set; with it set, every xdist worker parses and rewrites all ~150
# test modules again at every session (8.6 s of CPU per worker against 2.6 s from the cache,
# measured here). The cache is gitignored and only this process writes it; the uet processes
# the tests start keep the environment they were given.
sys.dont_write_bytecode = False


def _memory_temp_root() -> str | None:
    """/dev/shm when it is a tmpfs that runs programs and has room for a session, else None.

    The tests' repositories are small and short-lived: on a disk file system each file costs a
    journal entry, each removal a discard and each of git's and the ledger's fsyncs a wait for
    the device; in memory none of these. What a test proves does not depend on where its
    tmp_path lives, except the tests about paths under /tmp, which ask for /tmp themselves."""
    shm = "/dev/shm"
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split() for line in f]
        st = os.statvfs(shm)
    except OSError:
        return None
    options = [m[3].split(",") for m in mounts if len(m) > 3 and m[1] == shm and m[2] == "tmpfs"]
    if not options or "noexec" in options[-1] or "ro" in options[-1]:
        return None
    if st.f_bavail * st.f_frsize < 4 << 30 or not os.access(shm, os.W_OK | os.X_OK):
        return None
    return shm


# Where pytest makes tmp_path (pytest's documented variable; its default is the system's
# temporary directory). Set in the environment before pytest makes its base directory, so the
# xdist workers get theirs under it; `PYTEST_DEBUG_TEMPROOT=/tmp pytest ...` runs on the disk.
if (_root := _memory_temp_root()) is not None:
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", _root)

# Read once when the engine module is imported, which in this process happens before any test
# sets it: the retry backoff of every run here is the short one the e2e helpers ask for.
os.environ.setdefault("UET_RETRY_BACKOFF", "0.05")

# The tests' own global git config in place of the user's (no test writes a ~/.gitconfig):
# auto maintenance off, so no `git commit` or fetch of a test starts `git maintenance run
# --auto` (a thousand of them over the suite). gc.auto stays unset: the tests of uet's own
# `gc.auto=0` still see only what uet sets. Written once, the same bytes by every process.
_GIT_GLOBAL_CONFIG_TEXT = "[maintenance]\n\tauto = false\n"


def _git_global_config() -> str:
    path = Path(tempfile.gettempdir()) / f"uet-tests-{os.getuid()}.gitconfig"
    try:
        if path.read_text() == _GIT_GLOBAL_CONFIG_TEXT:
            return str(path)
    except OSError:
        pass
    tmp = path.with_name(f"{path.name}.{os.getpid()}")
    tmp.write_text(_GIT_GLOBAL_CONFIG_TEXT)
    os.replace(tmp, path)  # another process may write it at the same moment: whole or not
    return str(path)


# Deterministic identities and no user config leaking into tests.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": _git_global_config(),
}

# Also for the whole process, not only inside each test: a module- or session-scoped fixture
# (set up before any test's own fixtures) that commits gets the same identity.
for _k, _v in GIT_ENV.items():
    os.environ.setdefault(_k, _v)

@contextlib.contextmanager
def module_git_env(home: Path | None = None) -> Iterator[None]:
    """The environment a test gets from ``_git_identity`` (git's identity and config, and
    ``home`` as HOME when given), for a module-scoped fixture: it is set up before, and
    outlives, any one test's monkeypatch."""
    with pytest.MonkeyPatch.context() as mp:
        if home is not None:
            mp.setenv("HOME", str(home))
        for k, v in GIT_ENV.items():
            mp.setenv(k, v)
        yield


# Variables that make uet leave with os._exit at a chosen point: never in this process.
CRASH_VARS = ("UET_TEST_CRASH_AT", "UET_LEDGER_CRASH", "UET_BRANCH_CRASH")


# Files holding the suite's longest tests (``pytest --durations``), run first: the workers
# (``-n``) then end together instead of one starting a long test when the others are almost
# done. Whole files move, so module-scoped fixtures are still set up once. A name that is gone
# (or a new long test not listed) only runs in its usual place.
RUN_FIRST = (
    "tests/gitrepo/test_branch.py",
    "tests/e2e/test_faults.py",
    "tests/e2e/test_distributed.py",
    "tests/e2e/test_demo.py",
    "tests/ledger/test_writer_fanout.py",
    "tests/ledger/test_housekeeping.py",
    "tests/ledger/test_takeover.py",
    "tests/e2e/test_adversarial.py",
    "tests/e2e/test_queue.py",
    "tests/e2e/test_run_crash.py",
    "tests/e2e/test_watch.py",
)


# What a module-scoped fixture started for the whole process (a Dask cluster: its processes
# tick, seconds of CPU a minute), closed as soon as the next test this process runs is in a
# module without a fixture of that name: fixture name -> how to close it. The modules using one
# run one after another on one xdist worker (ONE_WORKER), so it starts once.
CLOSE_WHEN_UNUSED: dict[str, Callable[[], None]] = {}

# Files whose tests all go to one xdist worker, one after another: the ones sharing the Dask
# cluster of tests/e2e/daskkit.py (spread like the others, every worker started a cluster of
# its own). xdist's `xdist_group` mark does not group with this pytest (it renames the test
# ids through an attribute pytest 9 no longer reads), hence the scheduler below.
ONE_WORKER = ("tests/e2e/test_distributed.py", "tests/e2e/test_distributed_verify.py")


class _LoadKeepingOneWorkerFiles(LoadScopeScheduling):
    """``--dist load`` (each test a unit of its own, a worker given more when it has two or
    fewer left) except that the tests of ONE_WORKER are one unit, given to one worker at the
    place of the first of them in the collection order."""

    def _split_scope(self, nodeid: str) -> str:
        return "one-worker" if nodeid.split("::", 1)[0] in ONE_WORKER else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "load":
        return None
    return _LoadKeepingOneWorkerFiles(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    yield
    module = getattr(nextitem, "module", None)
    for name in [n for n in CLOSE_WHEN_UNUSED if not hasattr(module, n)]:
        CLOSE_WHEN_UNUSED.pop(name)()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    first = {name: i for i, name in enumerate(RUN_FIRST)}
    items.sort(key=lambda item: first.get(item.nodeid.split("::", 1)[0], len(first)))


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    for k, v in GIT_ENV.items():
        monkeypatch.setenv(k, v)
    for k in ("UET_JOBS", "PIPELINE_MAX_WORKERS", "PIPELINE_DRY_RUN", "UET_DEBUG"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(autouse=True)
def _no_uet_thread_left() -> Iterator[None]:
    """A run stops its worker and integrator threads before it returns; one still alive after
    a test would keep working on that test's repository while the next one runs."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate()
            if t not in before and t.name.startswith("uet") and t.is_alive()]
    for t in left:
        t.join(timeout=5)
    alive = [t.name for t in left if t.is_alive()]
    assert not alive, f"uet threads still running after the test: {alive}"
    _reap_adopted_zombies()


def _reap_adopted_zombies() -> None:
    """Once uet has run a tool in this process, this process is a child subreaper: what a
    ``uet`` subprocess leaves behind when it is killed (its ``git update-ref`` child, a tool in
    its own session) is re-parented here instead of to init. Reap what init would have; every
    child the test started itself has been waited for by now (its threads are gone). One
    ``waitid`` per zombie and one more (none left, or no child at all): no /proc reads."""
    while True:
        try:
            if os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG) is None:
                return
        except ChildProcessError:
            return


def git(cwd: Path | str, *args: str, check: bool = True, input: str | None = None) -> str:
    """Run the git CLI and return stripped stdout."""
    proc = sp.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, input=input
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout.strip()


# Repositories make_repo built in this process, by what went into them: the next one asked for
# with the same files is a copy (no `git init`, `add`, `commit`: most tests start from one of a
# few repositories). Kept in memory: writing one back is an open, a write, a utime and a close
# per file, where copytree's copy2 also stats, reads, copies the mode and lists the xattrs.
@dataclass(frozen=True)
class _Tree:
    """A directory's contents as they were: the relative path, mode and (atime, mtime) in ns
    of each directory (parents first, the top one ""), the same and the bytes of each file,
    and the target of each symbolic link."""

    dirs: tuple[tuple[str, int, tuple[int, int]], ...]
    files: tuple[tuple[str, int, tuple[int, int], bytes], ...]
    links: tuple[tuple[str, str], ...]


_REPO_TEMPLATES: dict[tuple[object, ...], _Tree] = {}
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _read_tree(top: Path) -> _Tree:
    dirs: list[tuple[str, int, tuple[int, int]]] = []
    files: list[tuple[str, int, tuple[int, int], bytes]] = []
    links: list[tuple[str, str]] = []
    st = os.lstat(top)
    dirs.append(("", stat.S_IMODE(st.st_mode), (st.st_atime_ns, st.st_mtime_ns)))
    for dirpath, dirnames, filenames in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            sub = os.path.normpath(os.path.join(rel, name))
            st = os.lstat(path)
            times = (st.st_atime_ns, st.st_mtime_ns)
            if stat.S_ISLNK(st.st_mode):
                links.append((sub, os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                dirs.append((sub, stat.S_IMODE(st.st_mode), times))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    files.append((sub, stat.S_IMODE(st.st_mode), times, f.read()))
            else:
                raise AssertionError(f"{path}: not a file, directory or symbolic link")
    return _Tree(tuple(dirs), tuple(files), tuple(links))


def _write_tree(tree: _Tree, dest: Path) -> None:
    """``tree`` at ``dest`` (a new path) as ``shutil.copytree(..., symlinks=True)`` copies it:
    the same bytes, modes and times."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    top = str(dest)
    for rel, mode, _ in tree.dirs:
        os.mkdir(os.path.join(top, rel), mode)
    for rel, mode, times, data in tree.files:
        fd = os.open(os.path.join(top, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if mode & _UMASK:
                os.fchmod(fd, mode)
            os.utime(fd, ns=times)
        finally:
            os.close(fd)
    for rel, target in tree.links:
        os.symlink(target, os.path.join(top, rel))
    for rel, mode, times in reversed(tree.dirs):  # a directory's times after its entries
        path = os.path.join(top, rel)
        if mode & _UMASK:
            os.chmod(path, mode)
        os.utime(path, ns=times)


# An index entry's ctime s and ns, mtime s and ns, dev, ino, mode, uid, gid and size.
_STAT = struct.Struct(">10I")
_FILE_MODES = (0o100644, 0o100755, 0o120000)


def refresh_copy(path: Path) -> None:
    """The index of the copied repository at ``path`` given the copy's inodes and ctimes
    (``restat_index``, git's ``update-index --refresh`` when that cannot), so that the first
    git command a test runs does not rewrite the index the test compares."""
    if not restat_index(path):
        git(path, "update-index", "-q", "--refresh")


def copy_repo(template: Path, path: Path) -> Path:
    """``path``: a copy of the repository at ``template`` (files with their bytes, modes and
    times, symbolic links as links), its index refreshed (``refresh_copy``)."""
    shutil.copytree(template, path, symlinks=True)
    refresh_copy(path)
    return path


def handed_again(handed: dict[Any, str], key: object) -> bool:
    """Whether what ``key`` names was already handed out in the running test (then it needs
    a recording of its own: two runs of one test never share a run id); else it is noted as
    handed to this test."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    if handed.get(key) == test:
        return True
    handed[key] = test
    return False


def restat_index(path: Path) -> bool:
    """What ``git update-index -q --refresh`` does in the copy at ``path`` of a repository
    whose files have the bytes and mtimes its index records: each entry's stat data taken from
    the copy's file (git's fill_stat_data: 32-bit fields, the ns parts), the index written
    again through ``index.lock`` with its SHA-1. False, nothing written, for anything else (the
    caller then runs git): an index that is not version 2 with at most a TREE extension and a
    good checksum, an entry that is not a plain file or symbolic link, a file whose size or
    mtime is not the one recorded (git would look at its content)."""
    index = path / ".git" / "index"
    try:
        data = index.read_bytes()
    except OSError:
        return False
    if (len(data) < 32 or data[:4] != b"DIRC" or data[4:8] != b"\0\0\0\2"
            or hashlib.sha1(data[:-20]).digest() != data[-20:]):
        return False
    out = bytearray(data[:12])
    pos, end = 12, len(data) - 20
    top = os.fsencode(path)
    for _ in range(int.from_bytes(data[8:12], "big")):
        if pos + 62 > end:
            return False
        old = _STAT.unpack_from(data, pos)
        flags = int.from_bytes(data[pos + 60:pos + 62], "big")
        size = 62 + (flags & 0xFFF)
        if flags & 0x4000 or flags & 0xFFF == 0xFFF or old[6] not in _FILE_MODES:
            return False
        try:
            st = os.lstat(os.path.join(top, data[pos + 62:pos + size]))
        except OSError:
            return False
        link = stat.S_ISLNK(st.st_mode)
        if (link != (old[6] == 0o120000) or not (link or stat.S_ISREG(st.st_mode))
                or (st.st_size & 0xFFFFFFFF, int(st.st_mtime), st.st_mtime_ns % 10**9)
                != (old[9], old[2], old[3])):
            return False
        out += _STAT.pack(int(st.st_ctime) & 0xFFFFFFFF, st.st_ctime_ns % 10**9,
                          old[2], old[3], st.st_dev & 0xFFFFFFFF, st.st_ino & 0xFFFFFFFF,
                          old[6], st.st_uid & 0xFFFFFFFF, st.st_gid & 0xFFFFFFFF, old[9])
        entry = (size + 8) & ~7  # NUL-padded to a multiple of 8
        out += data[pos + 40:pos + entry]
        pos += entry
    ext = pos
    while ext < end:
        if data[ext:ext + 4] != b"TREE" or ext + 8 > end:
            return False
        ext += 8 + int.from_bytes(data[ext + 4:ext + 8], "big")
    if ext != end:
        return False
    out += data[pos:end]
    out += hashlib.sha1(out).digest()
    lock = index.with_name("index.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(out)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    os.replace(lock, index)
    return True


def make_repo(path: Path, files: dict[str, str] | None = None, branch: str = "main") -> Path:
    """A non-bare repository at ``path`` with one commit holding ``files``.

    A copy of the one built before in this process from the same files, branch and git
    environment (identity, dates, config) when there is one and ``path`` does not exist yet:
    the same commit, so its date is that first build's."""
    files = files or {"README.md": "hello\n"}
    key = (branch, tuple(sorted(files.items())),
           tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("GIT_"))))
    fresh = not path.exists()
    template = _REPO_TEMPLATES.get(key) if fresh else None
    if template is not None:
        _write_tree(template, path)
        refresh_copy(path)
        return path
    if fresh:
        _init_repo(path, (branch, key[2]))
    else:
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", branch)
    for name, content in files.items():
        f = path / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    if fresh:
        _REPO_TEMPLATES[key] = _read_tree(path)
    return path


def _init_repo(path: Path, key: tuple[object, ...]) -> None:
    """``git init -q -b BRANCH path`` (a new path), or a copy of the one done before."""
    template = _REPO_TEMPLATES.get(key)
    if template is not None:
        _write_tree(template, path)
        return
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", str(key[0]))
    _REPO_TEMPLATES[key] = _read_tree(path)


def fsck_quick(repo: Path | str) -> tuple[str, ...]:
    """Options for ``git fsck`` in ``repo`` that spare it starting ``git commit-graph verify``
    and ``git multi-pack-index verify`` when the repository has neither file (nothing for
    them to check); none when it has one, alternates, or is not a plain ``.git`` directory."""
    objects = Path(repo) / ".git" / "objects"
    if not objects.is_dir():
        objects = Path(repo) / "objects"
        if not (Path(repo) / "HEAD").is_file() or not objects.is_dir():
            return ()
    if any((objects / p).exists() for p in ("info/commit-graph", "info/commit-graphs",
                                             "pack/multi-pack-index", "info/alternates")):
        return ()
    return ("-c", "core.commitGraph=false", "-c", "core.multiPackIndex=false")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def uet(*args: str, cwd: Path | str, env: dict[str, str] | None = None,
        timeout: float = 120, subprocess: bool = False) -> sp.CompletedProcess[str]:
    """Run ``uet ARGS`` in ``cwd`` with ``env`` laid over the environment; the result reads
    like a finished process (returncode, stdout, stderr as text).

    In this process unless ``subprocess`` is true (``python -m uet_git``) or ``env`` asks for
    a crash point (a forked process)."""
    if subprocess:
        return uet_proc(*args, cwd=cwd, env=env, timeout=timeout)
    if any(k in (env or {}) for k in CRASH_VARS):
        return uet_forked(*args, cwd=cwd, env=env, timeout=timeout)
    return _uet_in_process(list(args), cwd=Path(cwd), env=env or {}, timeout=timeout)


def uet_proc(*args: str, cwd: Path | str, env: dict[str, str] | None = None,
             timeout: float = 120) -> sp.CompletedProcess[str]:
    """Run ``python -m uet_git ARGS`` as a subprocess (the real entry point)."""
    full_env = {**os.environ, **(env or {})}
    return sp.run(
        [sys.executable, "-m", "uet_git", *args],
        cwd=cwd, capture_output=True, text=True, env=full_env, timeout=timeout,
        stdin=sp.DEVNULL,
    )


def uet_forked(*args: str, cwd: Path | str, env: dict[str, str] | None = None,
               timeout: float = 120) -> sp.CompletedProcess[str]:
    """Run ``uet ARGS`` in a child forked from this process (``start_forked``), as
    ``uet_proc`` would in a new one: the exit code, or minus the signal that ended it, and
    what the child wrote, also before an ``os._exit``. After ``timeout`` s the child is
    killed and ``TimeoutExpired`` raised."""
    argv = list(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = start_forked(lambda: main_exit_code(argv), cwd=cwd, env=env,
                           stdout=out.fileno(), stderr=err.fileno())
        code = wait_forked(pid, timeout)
        if code is None:
            raise sp.TimeoutExpired(["uet", *argv], timeout)
        out.seek(0)
        err.seek(0)
        stdout, stderr = _text(out.read()), _text(err.read())
    return sp.CompletedProcess(["uet", *argv], code, stdout, stderr)


def start_forked(fn: Callable[[], int | None], *, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None, stdout: int | None = None,
                 stderr: int | None = None, new_session: bool = False) -> int:
    """Fork; the child runs ``fn()`` and exits with what it returns (None: 0; an exception:
    1, its traceback on stderr), never returning into pytest. The child has stdin from
    /dev/null, unbuffered stdout and stderr on the given file descriptors (/dev/null when
    None), ``cwd``, ``env`` laid over the environment, the default SIGINT and SIGTERM
    handling, and none of this process's other threads (no uet thread runs between tests).
    Returns the child's pid; ``wait_forked`` waits for it."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        if new_session:
            os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd, to in ((null, 0), (null if stdout is None else stdout, 1),
                       (null if stderr is None else stderr, 2)):
            os.dup2(fd, to)
        std_streams_over_fds()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if cwd is not None:
            os.chdir(cwd)
        os.environ.update(env or {})
        code = fn() or 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


class ForkedChild:
    """A child forked from this process (``start_forked``) seen as a ``subprocess.Popen``
    is: ``pid``, ``poll``/``wait`` (the exit code, or minus the signal that ended it),
    ``send_signal``/``kill``. ``wait``'s timeout is reported by ``timed_out``."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float = 60) -> int:
        """The exit code; after ``timeout`` s the child is killed and ``timed_out`` raises."""
        if self.returncode is None:
            code = wait_forked(self.pid, timeout)
            if code is None:
                self.returncode = -signal.SIGKILL
                raise self.timed_out(timeout)
            self.returncode = code
        return self.returncode

    def timed_out(self, timeout: float) -> Exception:
        return sp.TimeoutExpired(f"forked child {self.pid}", timeout)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Forked(ForkedChild):
    """``fn()`` in a child forked from this process (``start_forked``), used as a
    ``subprocess.Popen(..., stdout=PIPE, stderr=PIPE, text=True)`` of a ``python -c`` script
    would be, without a new interpreter importing uet (~0.2 s of CPU each): ``pid``,
    ``stdout`` (a pipe, read line by line), ``poll``/``wait``/``communicate`` (the exit code,
    or minus the signal that ended it), ``send_signal``/``kill``. stderr goes to a file, so
    only what the child writes to stdout beyond a pipe's 64 KiB before it ends can block it."""

    def __init__(self, fn: Callable[[], int | None], *, cwd: Path | str | None = None,
                 env: dict[str, str] | None = None, new_session: bool = False) -> None:
        self.returncode: int | None = None
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close)
        read, write = os.pipe()
        try:
            self.pid = start_forked(fn, cwd=cwd, env=env, stdout=write,
                                    stderr=self._err.fileno(), new_session=new_session)
        finally:
            os.close(write)
        self.stdout = open(read, encoding=locale.getpreferredencoding(False))  # noqa: SIM115

    def communicate(self, timeout: float = 60) -> tuple[str, str]:
        """The exit code waited for, then the rest of stdout (to its end: also what a child of
        the child still writes) and all of stderr."""
        self.wait(timeout)
        out = self.stdout.read()
        self._err.seek(0)
        err = _text(self._err.read())
        self.close()
        return out, err

    def close(self) -> None:
        """The pipe and the file closed (the child killed and reaped first if it runs)."""
        if self.poll() is None:
            self.kill()
            self.wait()
        self.stdout.close()
        self._err.close()


def std_streams_over_fds() -> None:
    """In a forked child: ``sys.stdin``/``stdout``/``stderr`` over fds 0-2 as they are now
    (unbuffered output, the locale's encoding), as a new interpreter would have them."""
    enc = locale.getpreferredencoding(False)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding=enc)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=enc,
                                  write_through=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=enc,
                                  errors="backslashreplace", write_through=True)


def wait_forked(pid: int, timeout: float) -> int | None:
    """The exit code of child ``pid`` (minus the signal that ended it), or None, the child
    killed and reaped, after ``timeout`` s."""
    fd = os.pidfd_open(pid)
    try:
        if select.select([fd], [], [], timeout)[0]:
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(fd)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def main_exit_code(argv: list[str]) -> int:
    """``main(argv)`` as the interpreter would end with it."""
    try:
        main(argv)
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _text(data: bytes) -> str:
    """Bytes as ``subprocess.run(text=True)`` decodes them (locale encoding, universal
    newlines), so a test reads the same text either way."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=locale.getpreferredencoding(False)).read()


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Watchdog:
    """What ``subprocess.run(timeout=...)`` does, for a command run in this process: after
    ``timeout`` s, note every thread's stack and interrupt the main thread with SIGINT (uet
    winds down as after a Ctrl-C and exits 130); if even that does not end it, leave the
    process with the stacks on stderr rather than hang the suite."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.stacks = ""
        self._lock = threading.Lock()
        self._done = False
        self._main = threading.main_thread().ident or 0
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()
        faulthandler.dump_traceback_later(self.timeout + 60, exit=True,
                                          file=sys.__stderr__ or sys.stderr)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            frames = sys._current_frames()
            self.stacks = "".join(
                f"--- thread {t.name}\n" + "".join(traceback.format_stack(frames[t.ident]))
                for t in threading.enumerate() if t.ident in frames)
            signal.pthread_kill(self._main, signal.SIGINT)

    def stop(self) -> None:
        # Under the lock: once it is ours no SIGINT can be sent any more, and one sent before
        # is handled in here, inside the caller's try.
        with self._lock:
            self._done = True
        self._timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def _uet_in_process(argv: list[str], *, cwd: Path, env: dict[str, str],
                    timeout: float) -> sp.CompletedProcess[str]:
    handlers = {s: signal.getsignal(s) for s in _SIGNALS}
    environ = dict(os.environ)
    runner = CliRunner()
    watchdog = _Watchdog(timeout)
    code = 0
    with _chdir(cwd), runner.isolation(env=env) as (out, err, _):
        try:
            watchdog.start()
            try:
                main(argv)
            finally:
                watchdog.stop()
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:  # what the interpreter does with sys.exit("message")
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what the interpreter does with an uncaught exception
            traceback.print_exc(file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = _text(out.getvalue()), _text(err.getvalue())
    # What a process would have taken with it: the test must not see it.
    changed = [s.name for s in _SIGNALS if signal.getsignal(s) != handlers[s]]
    for s in _SIGNALS:
        signal.signal(s, handlers[s])
    if watchdog.stacks:
        raise AssertionError(
            f"uet {' '.join(argv)} did not finish in {timeout:g} s (exit {code} after SIGINT)\n"
            f"--- stdout\n{stdout}--- stderr\n{stderr}--- stacks at the timeout\n"
            f"{watchdog.stacks}")
    assert not changed, f"uet {' '.join(argv)} left signal handlers installed: {changed}"
    assert dict(os.environ) == environ, f"uet {' '.join(argv)} changed os.environ"
    return sp.CompletedProcess(["uet", *argv], code, stdout, stderr)
