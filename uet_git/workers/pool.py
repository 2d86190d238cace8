"""A pool of reusable worktrees, one slot per concurrent worker.

Layout under ``root`` (default ``<common git dir>/uet/worktrees``): ``<slot>/`` is the worktree,
``<slot>.lock`` a file lock held by the pool that owns the slot (so two runs on one repository
never share a slot, and a slot whose lock nobody holds was left by a crashed run), and
``<slot>.json`` records the base the slot was last reset to and a label (e.g. ``RUN/WS/N``).

Worktrees are created locked (``git worktree lock --reason uet``) and stay locked for their
whole life: neither the user's ``git worktree prune``/``remove`` nor ``git gc`` drop one (and the
objects only its HEAD/index reference) while uet uses it. ``close(remove=True)`` unlocks and
removes them, unless the pool was made with ``keep`` (``[worktree] keep = true``, the default of
``uet run``): then the slots stay for the next run, which resets them to its base (``checkout -f``
+ ``clean``, ~0.1 s at 30,000 files, against ~8 s for a fresh checkout). ``prune_idle`` (``uet
gc``) removes kept slots nobody has used for a while.

A new slot is registered with ``git worktree add --no-checkout`` under the admin lock (git is
not safe against itself there) and checked out outside it, so concurrent workers populate their
new slots in parallel instead of one after another behind the lock.

``[worktree] setup`` commands run (``sh -c``, cwd = the worktree) each time a slot gets a fresh
checkout: when it is created, and when it is reset without ``keep_ignored`` (the reset removes
the ignored files a setup makes, e.g. ``node_modules``); a reused slot that kept them is not set
up again. Their output is ``<slot>.setup-N.out``/``.err`` beside the slot; a failing one is a
one-line error (the repository-wide setup would fail for every workstream).

A slot is reset (or removed) only once nothing works in it: processes whose cwd or root is in
it, or that hold a file open there (a tool's daemon that escaped the sweep, or one left by a
crashed run), are killed first; a slot where something survives that (an ancestor of uet, a
process we may not kill) is not reused, so nothing writes into the next workstream's worktree.
The sweep reads every process on the machine; it is skipped for a slot given back
``contained`` (``release``: everything run there was in a PID-namespace sandbox and has
exited, so the kernel ended whatever it started).

Crash safety: a slot left by a crashed run is reused only after checking it. If it holds
uncommitted changes or its HEAD moved from its recorded base, it is an *orphan*: the pool never
resets or removes it by itself. The engine lists them (``orphans()``), records them in the
ledger (``snapshot_orphan`` makes a commit of their content), then hands them back with
``release()``. A slot given back with ``release()`` is marked so in its ``<slot>.json`` (its
content is in the ledger, by the caller's contract): the next run takes it without the check (a
``git status`` of every kept slot costs ~0.2 s each at 30,000 files).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from uet_git.errors import UetError
from uet_git.gitrepo.objects import make_commit
from uet_git.gitrepo.odb import get_commit
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.snapshot import snapshot_tree
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    dirty_paths,
    remove_worktree,
    reset_worktree,
    vanished_worktrees,
    worktree_head,
)
from uet_git.workers.process import run_process
from uet_git.workers.procfs import ancestors, kill_pids, processes_under

LOCK_REASON = "uet worker pool"


@dataclass
class Worktree:
    path: Path
    slot: int
    base: str | None = None
    label: str | None = None
    # Set by whoever runs commands in it (False again at each acquire and reset): every one
    # since then ran in a PID-namespace sandbox and has exited, so nothing it started lives.
    contained: bool = False


class WorktreePool:
    """Thread-safe. ``size`` is the expected concurrency (slots ``0..size-1`` are used first);
    ``acquire`` never blocks: past ``size`` it creates another slot."""

    def __init__(self, repo: Repo, *, root: Path | None = None, size: int = 4,
                 keep_ignored: bool = False, include: list[str] | None = None,
                 setup: list[str] | None = None, setup_timeout: float = 900.0,
                 keep: bool = False, teardown: list[str] | None = None) -> None:
        self.repo = repo
        self.root = Path(root) if root is not None else pool_root(repo)
        self.root.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.keep = keep
        self.keep_ignored = keep_ignored
        self.include = list(include or [])
        self.setup = list(setup or [])
        self.setup_timeout = setup_timeout
        self.teardown = list(teardown or [])
        self._mutex = threading.Lock()
        self._locks: dict[int, filelock.BaseFileLock] = {}
        self._free: list[Worktree] = []  # clean slots we own, ready for reset
        self._busy: dict[int, Worktree] = {}
        self._orphans: dict[int, Worktree] = {}
        self._stuck: set[int] = set()  # something we may not kill works in it: never reused
        # slot -> what its <slot>.json on disk says ("released", "preparing", "busy"), as
        # this pool last wrote or read it
        self._meta_state: dict[int, str] = {}
        self._contained: set[int] = set()  # free slots given back contained (``release``)
        self._set_up: set[int] = set()  # busy slots our [worktree] setup ran in
        self._adopt_stale()

    # --- public API ----------------------------------------------------------------------

    def acquire(self, base: str, label: str | None = None) -> Worktree:
        """A worktree at ``base`` (detached, clean), reused by reset if one is free."""
        while True:
            with self._mutex:
                wt = self._free.pop(0) if self._free else None
                if wt is None:
                    slot = self._claim_new_slot()
                    wt = Worktree(self.root / str(slot), slot)
                self._busy[wt.slot] = wt
                swept = wt.slot in self._contained
                self._contained.discard(wt.slot)
            # The /proc sweep (every process on the machine) only where something may still
            # work: not in a slot given back contained (see ``release``).
            if swept or quiesce(wt.path):
                break
            with self._mutex:
                self._busy.pop(wt.slot, None)
                self._stuck.add(wt.slot)
        # Until the reset is done the slot holds only released (recorded) content: a crash
        # in between must not make it look like an orphan. Its meta says so already when it
        # was last written released or preparing (one write per acquire, one per release).
        wt.base, wt.label = None, None
        if self._meta_state.get(wt.slot) not in ("released", "preparing"):
            self._write_meta(wt, preparing=True)
        try:
            self._prepare(wt, base)
        except BaseException:
            with self._mutex:
                self._busy.pop(wt.slot, None)
                self._release_lock(wt.slot)
            raise
        wt.base, wt.label = base, label
        wt.contained = False
        self._write_meta(wt)
        return wt

    def release(self, wt: Worktree) -> None:
        """Give a worktree back (its result is in the ledger, or it was an orphan the engine
        has recorded). Its files stay until the next ``acquire`` resets it.

        ``wt.contained`` (set by the caller: every command it ran there since the acquire ran
        in a PID-namespace sandbox, ``sandbox.py``, and has exited, so the kernel ended all
        it started, ``setsid`` daemons included) and no ``[worktree] setup`` of ours ran since:
        the next acquire of the slot in this pool skips the sweep. Not covered, as by no
        accounting of the tool's processes: a process something outside the sandbox started
        on a tool's request (a system daemon asked over a socket)."""
        with self._mutex:
            if wt.contained and wt.slot not in self._set_up and wt.slot in self._locks:
                self._contained.add(wt.slot)
            self._set_up.discard(wt.slot)
            wt.contained = False
            self._busy.pop(wt.slot, None)
            self._orphans.pop(wt.slot, None)
            if wt.slot in self._locks:
                # Before it can be handed out again: a later acquire's meta must win.
                self._write_meta(wt, released=True)
            if (wt.slot in self._locks and wt.slot not in self._stuck
                    and all(f.slot != wt.slot for f in self._free)):
                self._free.append(wt)
                self._free.sort(key=lambda w: w.slot)

    def reset(self, wt: Worktree, base: str) -> None:
        """Put a busy worktree back at ``base`` (between tries of one attempt) as ``acquire``
        would hand it out: the include files copied and, when the reset removed ignored files,
        ``[worktree] setup`` run again."""
        wt.contained = False
        reset_worktree(self.repo, wt.path, base, keep_ignored=self.keep_ignored)
        copy_includes(self.repo, wt.path, self.include)
        if not self.keep_ignored:
            self._run_setup(wt)

    def orphans(self) -> list[Worktree]:
        """Slots left by a crashed run that hold work the ledger may not know: uncommitted
        changes, or a HEAD that moved from the recorded base. Not reused until released."""
        with self._mutex:
            return [self._orphans[s] for s in sorted(self._orphans)]

    def close(self, remove: bool = False) -> None:
        """Release the slots' locks; with ``remove`` delete the worktrees first (never an
        orphan that was not released, and never a busy one), unless the pool keeps them."""
        remove = remove and not self.keep
        with self._mutex:
            slots = sorted(self._locks)
            keep = set(self._orphans) | set(self._busy) | self._stuck
        for slot in slots:
            if remove and slot not in keep and quiesce(self.root / str(slot)):
                run_teardown(self.root, self.root / str(slot), self.teardown,
                             self.setup_timeout)
                remove_worktree(self.repo, self.root / str(slot))
                (self.root / f"{slot}.json").unlink(missing_ok=True)
                self._meta_state.pop(slot, None)
            with self._mutex:
                self._release_lock(slot)
        with self._mutex:
            self._free.clear()

    def __enter__(self) -> WorktreePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(remove=False)

    # --- internals -----------------------------------------------------------------------

    def _prepare(self, wt: Worktree, base: str) -> None:
        registered = self._registered(wt.path)
        fresh = not self.keep_ignored
        if registered and wt.path.is_dir():
            try:
                reset_worktree(self.repo, wt.path, base, keep_ignored=self.keep_ignored)
            except (GitError, OSError):
                # A broken slot (its content is known to the ledger: it was released): rebuild.
                remove_worktree(self.repo, wt.path)
                self._create(wt, base)
                fresh = True
        else:
            if wt.path.exists():
                _set_aside(wt.path)
            self._create(wt, base)
            fresh = True
        copy_includes(self.repo, wt.path, self.include)
        if fresh:
            self._run_setup(wt)

    def _create(self, wt: Worktree, base: str) -> None:
        """Register the slot (HEAD only, under git's admin lock), then check it out outside the
        lock. A crash in between leaves ``preparing`` in the meta: the next run resets it."""
        add_worktree(self.repo, wt.path, base, lock_reason=LOCK_REASON, checkout=False)
        # Nothing to clean: the directory was empty before the add (add_worktree checks).
        reset_worktree(self.repo, wt.path, base, keep_ignored=self.keep_ignored, clean=False)

    def _run_setup(self, wt: Worktree) -> None:
        if self.setup:
            with self._mutex:
                self._set_up.add(wt.slot)  # unsandboxed: its daemons are the sweep's business
        env = {"UET_WORKTREE": str(wt.path)}
        for i, cmd in enumerate(self.setup, 1):
            out = self.root / f"{wt.slot}.setup-{i}.out"
            err = self.root / f"{wt.slot}.setup-{i}.err"
            res = run_process(cmd, cwd=wt.path, env=env, timeout=self.setup_timeout,
                              stdout_path=out, stderr_path=err)
            if not res.ok:
                status = ("timed out" if res.timed_out else res.error
                          or f"exit {res.returncode}")
                raise UetError(f"[worktree] setup command {cmd!r} failed in {wt.path} "
                               f"({status}; output in {err})")

    def _registered(self, path: Path) -> bool:
        try:
            admin_dir(self.repo, path)
        except GitError:
            return False
        return True

    def _try_lock(self, slot: int) -> bool:
        lock = filelock.FileLock(str(self.root / f"{slot}.lock"), timeout=0,
                                 thread_local=False, is_singleton=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            return False
        self._locks[slot] = lock
        return True

    def _release_lock(self, slot: int) -> None:
        lock = self._locks.pop(slot, None)
        if lock is not None:
            lock.release(force=True)

    def _claim_new_slot(self) -> int:
        slot = 0
        while True:
            if slot not in self._locks and self._try_lock(slot):
                return slot
            slot += 1

    def _adopt_stale(self) -> None:
        """Take the slots nobody holds (left by an earlier or crashed run): clean ones become
        free, those holding unknown work become orphans."""
        names = sorted((p for p in self.root.iterdir() if p.is_dir() and p.name.isdigit()),
                       key=lambda p: int(p.name))
        for path in names:
            slot = int(path.name)
            if not self._try_lock(slot):
                continue  # another live run owns it
            meta = self._read_meta(slot)
            wt = Worktree(path, slot, _opt_str(meta.get("base")), _opt_str(meta.get("label")))
            if meta.get("preparing") or meta.get("released"):
                # Crashed while being reset, or given back after its result was recorded:
                # nothing unrecorded in it.
                self._meta_state[slot] = "released" if meta.get("released") else "preparing"
                self._free.append(wt)
                continue
            if not self._registered(path):
                _set_aside(path)  # not a worktree any more: keep its files, reuse the slot
                self._free.append(wt)
                continue
            try:
                dirty = dirty_paths(self.repo, path)
                head = worktree_head(self.repo, path)
            except GitError:
                dirty, head = ["?"], None
            if dirty or (wt.base is not None and head != wt.base):
                wt.base = wt.base or head
                self._orphans[slot] = wt
            else:
                # Clean at its recorded base (or never recorded: acquire crashed before the
                # tool ran, so it holds a plain checkout).
                self._free.append(wt)
        # Our own registered worktrees whose directory vanished: forget them (not the user's).
        for path in vanished_worktrees(self.repo, self.root):
            with contextlib.suppress(GitError, OSError):
                remove_worktree(self.repo, path)

    def _meta_path(self, slot: int) -> Path:
        return self.root / f"{slot}.json"

    def _read_meta(self, slot: int) -> dict[str, object]:
        return _read_meta_file(self._meta_path(slot))

    def _write_meta(self, wt: Worktree, preparing: bool = False, released: bool = False
                    ) -> None:
        self._meta_state.pop(wt.slot, None)  # unknown if the write fails half way
        write_meta(self.root, wt, preparing=preparing, released=released)
        self._meta_state[wt.slot] = ("released" if released else "preparing" if preparing
                                     else "busy")


def write_meta(root: Path, wt: Worktree, *, preparing: bool = False, released: bool = False
               ) -> None:
    """``<slot>.json``: the slot's base and label, whether it is being prepared (its content is
    a released one) or released (its content is recorded), and when it was last used."""
    path = root / f"{wt.slot}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"base": wt.base, "label": wt.label, "preparing": preparing,
                               "released": released, "pid": os.getpid(),
                               "time": time.time()}))
    os.replace(tmp, path)


def run_teardown(root: Path, path: Path, commands: list[str], timeout: float = 900.0
                 ) -> list[str]:
    """``[worktree] teardown``: each command (``sh -c``, cwd = the worktree) before the
    worktree goes; output in ``<slot>.teardown-N.out``/``.err`` beside it. Returns one line per
    command that failed: a failure is reported, it never keeps a worktree."""
    failed: list[str] = []
    env = {"UET_WORKTREE": str(path)}
    for i, cmd in enumerate(commands, 1):
        err = root / f"{path.name}.teardown-{i}.err"
        res = run_process(cmd, cwd=path, env=env, timeout=timeout,
                          stdout_path=root / f"{path.name}.teardown-{i}.out", stderr_path=err)
        if not res.ok:
            status = "timed out" if res.timed_out else res.error or f"exit {res.returncode}"
            failed.append(f"{path}: [worktree] teardown command {cmd!r} failed ({status}; "
                          f"output in {err})")
    return failed


def pool_root(repo: Repo, configured: str | None = None) -> Path:
    """Where a pool's slots live: ``[worktree] root`` (relative to the common git dir), else
    ``<common git dir>/uet/worktrees``."""
    if not configured:
        return repo.uet_dir / "worktrees"
    root = Path(configured)
    return root if root.is_absolute() else repo.common_dir / root


@dataclass
class IdlePrune:
    removed: list[Path]  # slots removed (or that would be, with dry_run)
    kept: list[str]  # one line per idle slot not removed, and why
    teardown_failed: list[str] = field(default_factory=list)  # removed all the same


def prune_idle(repo: Repo, root: Path | None = None, *, older_than: float = 0.0,
               dry_run: bool = False, now: float | None = None,
               teardown: list[str] | None = None) -> IdlePrune:
    """Remove the kept worktrees nobody uses (their slot lock is free) and nobody has used for
    more than ``older_than`` seconds (``uet gc``). A slot in use by a live run is skipped; one
    holding work the ledger may not know (changes beside a slot not given back, a moved HEAD)
    is kept and named, as the pool would (never the only copy of anything)."""
    root = Path(root) if root is not None else pool_root(repo)
    result = IdlePrune([], [])
    if not root.is_dir():
        return result
    now = time.time() if now is None else now
    slots = sorted((p for p in root.iterdir() if p.is_dir() and p.name.isdigit()),
                   key=lambda p: int(p.name))
    for path in slots:
        lock = filelock.FileLock(str(root / f"{path.name}.lock"), timeout=0,
                                 thread_local=False, is_singleton=False)
        try:
            lock.acquire()
        except filelock.Timeout:
            continue  # a live run owns it
        try:
            meta = _read_meta_file(root / f"{path.name}.json")
            used = meta.get("time")
            last = float(used) if isinstance(used, int | float) else path.stat().st_mtime
            if now - last < older_than:
                continue
            if not (meta.get("released") or meta.get("preparing")) and _holds_work(
                    repo, path, _opt_str(meta.get("base"))):
                result.kept.append(f"{path}: holds changes the ledger may not have (left by "
                                   f"{meta.get('label') or 'an unknown run'}); kept")
                continue
            if not dry_run:
                if not quiesce(path):
                    result.kept.append(f"{path}: a process still works in it; kept")
                    continue
                result.teardown_failed += run_teardown(root, path, list(teardown or []))
                remove_worktree(repo, path)
                for extra in root.glob(f"{path.name}.setup-*"):
                    extra.unlink(missing_ok=True)
                (root / f"{path.name}.json").unlink(missing_ok=True)
            result.removed.append(path)
        finally:
            lock.release(force=True)
    return result


def _holds_work(repo: Repo, path: Path, base: str | None) -> bool:
    try:
        if not path.is_dir() or not any(path.iterdir()):
            return False
        admin_dir(repo, path)
    except (GitError, OSError):
        return True  # not a worktree any more: its files may be anything
    try:
        return bool(dirty_paths(repo, path)) or (
            base is not None and worktree_head(repo, path) != base)
    except GitError:
        return True


def _read_meta_file(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def quiesce(path: Path, grace: float = 2.0) -> bool:
    """Kill every process working in ``path`` (cwd, root or an open file below it); True when
    nothing is left there but uet and its ancestors (which are never killed)."""
    if not path.exists():
        return True
    if not processes_under(path):
        return True
    kill_pids(lambda: processes_under(path), grace=grace)
    spare = ancestors(os.getpid())
    return all(pid in spare for pid in processes_under(path))


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _set_aside(path: Path) -> None:
    """Move a directory that is not a usable worktree out of the way, never deleting it."""
    dest = path.with_name(f"stale-{path.name}-{int(time.time() * 1000)}")
    path.rename(dest)


def copy_includes(repo: Repo, worktree: Path, patterns: list[str]) -> list[str]:
    """Copy the main checkout's files matching ``patterns`` (globs relative to the repository
    root, e.g. ``.env``, ``config/*.local``) into ``worktree`` when missing or changed.

    Only files the worktree ignores are copied: anything else would show up in the snapshot as
    a change the tool made. Returns the relative paths copied."""
    if not patterns:
        return []
    src_root = repo.workdir
    candidates: list[str] = []
    for pattern in patterns:
        if not pattern or pattern.startswith("/") or ".." in pattern.split("/"):
            continue  # only paths inside the main checkout
        try:
            matches = sorted(src_root.glob(pattern))
        except (ValueError, NotImplementedError):
            continue
        for src in matches:
            if ".git" in src.relative_to(src_root).parts:
                continue
            if src.is_dir() and not src.is_symlink():
                candidates += [str(f.relative_to(src_root)) for f in sorted(src.rglob("*"))
                               if (f.is_file() or f.is_symlink()) and ".git" not in f.parts]
            elif src.is_file() or src.is_symlink():
                candidates.append(str(src.relative_to(src_root)))
    if not candidates:
        return []
    admin = admin_dir(repo, worktree)
    proc = repo.git("--git-dir", str(admin), "--work-tree", str(worktree), "check-ignore",
                    "-z", "--stdin", cwd=worktree,
                    input="\0".join(candidates).encode() + b"\0", check=False)
    ignored = {p for p in proc.stdout.decode(errors="surrogateescape").split("\0") if p}
    copied: list[str] = []
    for rel in candidates:
        if rel not in ignored:
            continue
        src, dst = src_root / rel, Path(worktree) / rel
        if _same_file(src, dst):
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() or dst.is_file():
            dst.unlink()
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
        copied.append(rel)
    return copied


def _same_file(src: Path, dst: Path) -> bool:
    try:
        if src.is_symlink() or dst.is_symlink():
            return (src.is_symlink() and dst.is_symlink()
                    and os.readlink(src) == os.readlink(dst))
        a, b = src.stat(), dst.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


def snapshot_orphan(repo: Repo, wt: Worktree, message: str | None = None) -> str | None:
    """A commit of everything in an orphaned worktree (tracked, untracked-not-ignored, and the
    commits a tool made on top of its base), parent = its recorded base (else its HEAD).
    None when it holds nothing beyond that parent. The engine records the commit in the ledger
    (a ref) before the slot is released and reset."""
    head = worktree_head(repo, wt.path)
    parent = wt.base or head
    tree = snapshot_tree(repo, wt.path)
    if parent is not None and get_commit(repo, parent, what="orphan's base").tree == tree:
        return None
    body = [f"slot {wt.slot} at {wt.path}"]
    if wt.label:
        body.append(f"last used for {wt.label}")
    if head and head != parent:
        body.append(f"its HEAD was {head}")
    msg = (message or "uet: orphaned worktree") + "\n\n" + "\n".join(body) + "\n"
    return make_commit(repo, tree, [parent] if parent else [], msg)
