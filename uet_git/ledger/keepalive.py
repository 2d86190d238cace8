"""Ledger commits kept alive against a concurrent ``git gc --prune=now``.

``git gc --prune=now`` deletes what was unreachable when its walk began, so it can take
objects written before the refs moved even after they moved: after every transaction
the writer checks that its ledger commits not yet settled (their trees on the evidence
path and the evidence blobs, through a handle without libgit2's object cache) exist, and
writes them again from memory when not (the same bytes give the same ids, so the refs
become valid again without moving); a commit is settled once found complete while no
``git gc`` runs (``gc.pid``) and older than ``RECENT_SECONDS``. git refusing a ref to a
just-pruned object, or a write failing on a pruned parent, is answered the same way. A
patch or candidate commit gone the same way is written again from the commit read before
the transaction when its tree is still there. What it cannot put back (a pruned patch
tree, a prune still running after the writer closed) is a one-line error naming the ref,
and ``uet fsck`` reports it.

Objects made before any ledger transaction names them (a worker's patch commit: its blobs,
trees and the commit) are protected the same way by ``write_pinned``: a gc root points at them
the moment they are written (the worker's worktree HEAD, see ``workers/normalise.py``), then
the ``git gc`` that was running at that moment (its walk may have begun before the root
existed) is waited out and every object the commit adds to its base is looked for on disk;
what is gone is written again from the worktree and the check repeats. After that nothing is
unreferenced: the root holds until the ledger's transaction names the commit.
"""

from __future__ import annotations

import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.errors import UetError
from uet_git.gitrepo import GitError, RefTransaction, objects
from uet_git.gitrepo.merge import merge_trees
from uet_git.gitrepo.odb import (
    CommitInfo,
    Person,
    added_objects,
    entry_ids,
    get_commit,
    has_object,
    list_tree,
    not_loose,
    tree_of,
)
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger import layout

RECENT_SECONDS = 2.0  # a commit younger than this is not settled (for a bare `git prune`)
RECHECK_SECONDS = 0.25  # an unsettled commit other than the newest is looked at this often
RECENT_MAX = 512  # unsettled commits kept at most (a gc.pid that never goes)
GC_PID_STALE = 3600.0  # seconds: a gc.pid this old is a dead gc's (git itself says 12 h)
PRUNED_RETRIES = 5  # a transaction refused for a just-pruned object is tried this often again
GC_WAIT_SECONDS = 120.0  # a pinned write waits this long at most for a running gc to end
GC_POLL_SECONDS = 0.01


def pruned_object(exc: BaseException) -> bool:
    """Whether git refused a ref transaction because an object it names is gone (a
    concurrent prune removed it between our write and the transaction)."""
    return isinstance(exc, GitError) and "nonexistent object" in str(exc)


def _gc_running(repo: Repo) -> bool:
    """Whether a ``git gc`` (which may prune) runs in ``repo`` now: git holds ``gc.pid``."""
    try:
        return time.time() - (repo.common_dir / "gc.pid").stat().st_mtime < GC_PID_STALE
    except OSError:
        return False


def gc_identity(repo: Repo) -> tuple[bytes, int, int] | None:
    """Which ``git gc`` holds ``gc.pid`` now (its content, inode and mtime), or None when none
    runs: a new gc writes a new file, so a changed identity means the old one ended."""
    path = repo.common_dir / "gc.pid"
    try:
        st = path.stat()
        if time.time() - st.st_mtime >= GC_PID_STALE:
            return None
        return path.read_bytes(), st.st_ino, st.st_mtime_ns
    except OSError:
        return None


def pruning_gc(repo: Repo) -> tuple[bytes, int, int] | None:
    """The running ``git gc`` (``gc_identity``) when it may delete objects written moments
    ago: its command line asks for a prune (``--prune=now``, ``-c gc.pruneExpire=...``), or
    it cannot be read (another host's gc, no ``/proc``). None for a gc with git's default
    expiry (two weeks: nothing of a live run is that old) and when no gc runs."""
    running = gc_identity(repo)
    if running is None:
        return None
    fields = running[0].split()
    try:
        pid = int(fields[0])
        if len(fields) > 1 and fields[1].decode(errors="replace") != socket.gethostname():
            return running
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        # No such process on this host: the gc.pid of a gc that died (git's own rule reads
        # it as stale too); waiting for it would wait GC_WAIT_SECONDS for nothing.
        return None
    except (ValueError, IndexError, OSError):
        return running
    for arg in args:
        low = arg.lower()
        if (low.startswith(b"--prune") and low != b"--prune=2.weeks.ago") \
                or b"gc.pruneexpire" in low:
            return running
    return None


def wait_for_gc(repo: Repo, running: tuple[bytes, int, int] | None,
                timeout: float = GC_WAIT_SECONDS) -> None:
    """Return once the ``git gc`` identified by ``running`` (``gc_identity``) has ended (or
    after ``timeout``: the caller's check on disk decides then). A gc started later walks
    the refs as they are then, so it is not waited for."""
    deadline = time.monotonic() + timeout
    while running is not None and gc_identity(repo) == running \
            and time.monotonic() < deadline:
        time.sleep(GC_POLL_SECONDS)


def missing_new_objects(repo: Repo, commit: str, base: str | None, *,
                        fresh: Repo | None = None) -> list[str]:
    """The objects ``commit`` (a commit or a tree) adds to ``base`` (its tree, the subtrees
    and blobs that differ from ``base``'s) that are not on disk, read through a fresh handle
    (``fresh``, else a new one); ``[commit]`` when ``commit`` itself is gone. Cost in
    proportion to the change, not to the tree. Loose object files are looked for first
    (``stat``; the objects named through this process's handle): when all are there, nothing
    is missing and no fresh handle is opened."""
    try:
        if not not_loose(repo, added_objects(repo, commit, base)):
            return []
    except GitError:
        pass  # something could not be read: the full look below says what
    fresh = fresh or fresh_handle(repo)
    if not has_object(fresh, commit):
        return [commit]
    try:
        new_tree = tree_of(fresh, commit)
        old_tree = tree_of(fresh, base) if base else None
    except GitError:
        return [commit]
    gone: list[str] = []
    stack: list[tuple[str, str | None]] = [(new_tree, old_tree)]
    while stack:
        tree, old = stack.pop()
        if tree == old:
            continue
        if not has_object(fresh, tree):
            gone.append(tree)
            continue
        try:
            entries = list_tree(fresh, tree)
            before = {e.name: e for e in list_tree(fresh, old)} if old else {}
        except GitError:
            gone.append(tree)
            continue
        for e in entries:
            prev = before.get(e.name)
            if prev is not None and prev.oid == e.oid:
                continue
            if e.kind == "tree":
                stack.append((e.oid, prev.oid if prev is not None and prev.kind == "tree"
                              else None))
            elif e.kind == "blob" and not has_object(fresh, e.oid):
                gone.append(e.oid)
    return gone


def rebuild_tree(repo: Repo, info: CommitInfo, patch: str) -> bool:
    """Write again the tree of ``info``, a candidate made as ``patch`` rebased onto
    ``info``'s parent (``gitrepo.merge.rebase``: the same 3-way merge gives the same tree),
    when a concurrent prune took some of it; whether it came out as recorded. Its inputs
    (the patch, its base, the tip it was built on) are named by refs, so they are there."""
    try:
        base = get_commit(repo, patch).parent
        if info.parent is None or base is None:
            return False
        merged = merge_trees(repo, base, info.parent, patch)
    except GitError:
        return False
    return merged.tree == info.tree


def write_pinned(repo: Repo, write: Callable[[], str], pin: Callable[[str], None], *,
                 base: str | None, what: str) -> str:
    """``write()`` a commit (on ``base``) that no ref names yet, and keep it: ``pin`` makes
    a gc root point at it at once; then the ``git gc`` running at that moment is waited out
    (one that began its walk before the root existed may still delete what the root names)
    and every object the commit adds to ``base`` is looked for on disk. Whatever is gone is
    written again (``write()`` again: it writes the same objects from the same source) and
    checked again. Returns the commit, complete on disk and pinned; a one-line error when a
    concurrent prune takes it every time."""
    gone: list[str] = []
    failed: Exception | None = None
    for _ in range(PRUNED_RETRIES + 1):
        try:
            commit = write()
            pin(commit)  # git refuses a root to an object pruned since: write it again
        except Exception as exc:
            # What it builds on was pruned under it (libgit2 says so in its own words,
            # "object not found", not as a GitError): write it all again.
            failed = exc
            continue
        failed = None
        wait_for_gc(repo, pruning_gc(repo))
        gone = missing_new_objects(repo, commit, base)
        if not gone:
            return commit
    if failed is not None and not gone:
        raise failed
    raise UetError(f"{what}: a concurrent `git gc --prune=now` removed its objects "
                   f"{PRUNED_RETRIES + 1} times in a row ({gone[0][:12] if gone else 'write'}); "
                   "run it again when the gc is over", exit_code=1)


def fresh_handle(repo: Repo) -> Repo:
    """A handle with empty caches: libgit2 answers "exists" from its object cache for what
    this process wrote or read, even after another process pruned it from disk. Through
    ``Repo.fresh``: a copy built by hand would pin the filter drivers configured now, after
    tools ran, instead of those trusted at open (and would forget that the repository is bare)."""
    return repo.fresh()


@dataclass
class Written:
    """A ledger commit as the writer made it: enough to write it again, byte for byte."""

    base_tree: str
    files: dict[str, bytes]
    parent: str | None
    message: str
    author: Person
    committer: Person
    tree: str = ""
    commit: str = ""
    named: dict[str, CommitInfo] = field(default_factory=dict)  # patch/candidate read before
    at: float = 0.0  # when it was (last) written, monotonic
    checked: float = 0.0  # when it was last found complete on disk
    own: tuple[str, ...] = ()  # its objects: commit, tree, the trees and blobs of its files
    # What each named commit adds to its parent (``added_objects``: the same every look).
    named_added: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def write(self, repo: Repo) -> str:
        handle = repo
        for tries in range(3):
            try:
                tree = objects.build_tree(handle, self.base_tree, self.files) if self.files \
                    else self.base_tree
                commit = objects.make_commit(handle, tree, [self.parent] if self.parent else [],
                                             self.message, author=self.author,
                                             committer=self.committer)
                break
            except Exception:  # a concurrent prune took a tree from under us; write it again
                if tries == 2:
                    raise
                handle = fresh_handle(repo)  # one that does not take the cache for the disk
        if self.commit and (tree, commit) != (self.tree, self.commit):
            raise UetError(f"ledger commit {self.commit[:12]} written again came out as "
                           f"{commit[:12]}")  # pragma: no cover - same bytes, same id
        self.tree, self.commit = tree, commit
        self.at = time.monotonic()
        self.own = ()
        return commit

    def _own_objects(self, repo: Repo) -> tuple[str, ...]:
        """The ids of what this commit wrote (``()`` when they cannot all be read): the
        commit, its tree, every tree on its files' paths and their blobs."""
        if not self.own and self.commit:
            paths = set(self.files)
            for path in self.files:
                parts = path.split("/")
                paths.update("/".join(parts[:i]) for i in range(1, len(parts)))
            try:
                ids = entry_ids(repo, self.tree, paths)
            except GitError:
                return ()
            if len(ids) == len(paths):
                self.own = (self.commit, self.tree, *ids.values())
        return self.own

    def complete_loose(self, repo: Repo, seen: set[str] | None = None) -> bool:
        """Whether every object of this commit, and what the patch/candidate commits it names
        add to their parents, is a loose file on disk now (``stat``, no object cache): the
        cheap look; False says nothing yet (packed, or gone: ``missing`` tells)."""
        own = self._own_objects(repo)
        if not own or not_loose(repo, own):
            return False
        for oid, info in self.named.items():
            if seen is not None and oid in seen:
                continue
            added = self.named_added.get(oid)
            if added is None:
                try:
                    added = self.named_added[oid] = tuple(added_objects(repo, oid, info.parent))
                except GitError:
                    return False
            if not_loose(repo, added):
                return False
            if seen is not None:
                seen.add(oid)
        return True

    def missing(self, repo: Repo, fresh: Repo | None = None,
                seen: set[str] | None = None) -> list[str]:
        """The objects of this commit (and the patch/candidate it names) not on disk
        (``fresh``: a handle without libgit2's object cache). ``seen``: named commits found
        complete already in this pass (a chain names its candidate in ``applied`` and again
        in ``committed``; each check lists the candidate's and its parent's trees)."""
        fresh = fresh or fresh_handle(repo)
        gone = [oid for oid in (self.commit, self.tree) if not has_object(fresh, oid)]
        if gone:
            return gone
        for d in sorted({p.rpartition("/")[0] for p in self.files}):
            # Listing the directory reads every tree on its path from disk (a fresh handle).
            try:
                entries = {e.name: e.oid for e in list_tree(fresh, self.tree, d)}
            except Exception:  # a tree on the path is gone, however gitrepo reports it
                entries = {}
            for path in self.files:
                head, _, name = path.rpartition("/")
                if head != d:
                    continue
                oid = entries.get(name)
                if oid is None or not has_object(fresh, oid):
                    gone.append(oid or f"{self.tree}:{path}")
        for oid, info in self.named.items():
            if seen is not None and oid in seen:
                continue
            # The commit and what it adds to its parent (a candidate's merged trees).
            lost = missing_new_objects(repo, oid, info.parent, fresh=fresh)
            if not lost and seen is not None:
                seen.add(oid)
            gone.extend(lost)
        return gone


class Keepalive:
    """The ledger commits of one writer not yet settled (see the module doc)."""

    def __init__(self, repo: Repo, run: str) -> None:
        self._repo = repo
        self._run = run
        self._pending: deque[Written] = deque()

    def add(self, written: Written) -> None:
        """``written`` is now named by the ledger ref: look after it. A pruning ``git gc``
        running now may have walked the refs before they moved, and delete what they name
        until it ends: it is waited out first, so what this returns is on disk and named
        (readers right after the transaction find it)."""
        self.add_all([written])

    def add_all(self, writtens: list[Written]) -> None:
        """``add`` for the commits of one transaction: one wait for a pruning gc, one look."""
        self._pending.extend(writtens)
        wait_for_gc(self._repo, pruning_gc(self._repo))
        self.ensure()

    def rewrite(self, written: Written) -> None:
        """Write ``written`` again, and the patch/candidate commits it names that are gone
        while their trees are not."""
        written.write(self._repo)
        patch = parse_trailers(written.message).get("Uet-Patch")
        for info in written.named.values():
            self._rewrite_named(info, patch)

    def _rewrite_named(self, info: CommitInfo, patch: str | None) -> None:
        """Write again a patch/candidate commit a prune took: from the commit read before
        the transaction when its tree is complete, else after rebuilding a candidate's tree
        from its patch (``rebuild_tree``); left as it is when neither can be done."""
        fresh = fresh_handle(self._repo)
        try:
            parent_tree = tree_of(fresh, info.parent) if info.parent else None
        except GitError:
            return
        rebuilt = patch is not None and patch != info.oid and rebuild_tree(fresh, info, patch)
        if not rebuilt and missing_new_objects(self._repo, info.tree, parent_tree, fresh=fresh):
            return
        if not has_object(fresh_handle(self._repo), info.oid):
            objects.make_commit(self._repo, info.tree, list(info.parents), info.message,
                                author=info.author, committer=info.committer)

    def ensure(self, *, force: bool = False) -> None:
        """Write again whatever a concurrent prune removed of the ledger commits not yet
        settled (oldest first: each builds on the one before). A prune removes what was
        unreachable when its walk began, so it can take a transaction's objects for as long
        as it runs after the refs moved. A commit is settled once it is found complete at a
        moment no ``git gc`` runs (git holds ``gc.pid`` throughout) and it is older than
        ``RECENT_SECONDS`` (for a bare ``git prune``). The newest is always looked at, the
        others every ``RECHECK_SECONDS`` (``force``: all now); a one-line error for what
        cannot be written again."""
        if not self._pending:
            return
        now = time.monotonic()
        running = _gc_running(self._repo)  # looked at before the objects
        fresh: Repo | None = None  # opened only when the cheap look is not enough
        newest = self._pending[-1]
        settled: list[Written] = []
        seen: set[str] = set()
        for written in list(self._pending):
            if not (force or written is newest or now - written.checked >= RECHECK_SECONDS):
                continue
            if written.complete_loose(self._repo, seen):
                written.checked = now
                if not running and now - written.at >= RECENT_SECONDS:
                    settled.append(written)
                continue
            fresh = fresh or fresh_handle(self._repo)
            for _ in range(3):
                if not written.missing(self._repo, fresh, seen):
                    break
                try:
                    self.rewrite(written)
                except Exception:  # what it builds on went too, in one not due yet
                    if force:
                        raise
                    self.ensure(force=True)
                    return
                fresh = fresh_handle(self._repo)
            else:
                gone = written.missing(self._repo, fresh_handle(self._repo))
                if gone:
                    raise UetError(
                        f"run {self._run}: {layout.ledger_ref(self._run)} names objects a "
                        f"concurrent `git gc --prune=now` removed ({gone[0][:12]}) that cannot "
                        f"be written again; run `uet fsck {self._run}`", exit_code=1)
            written.checked = now
            if not running and now - written.at >= RECENT_SECONDS:
                settled.append(written)
        for written in settled:
            self._pending.remove(written)
        while len(self._pending) > RECENT_MAX:  # a gc.pid that never goes: bound the work
            self._pending.popleft()


def commit_keeping(keep: Keepalive, build: Callable[[], RefTransaction], written: Written,
                   commit: Callable[[RefTransaction], None]) -> None:
    """``commit(build())``; when git refuses it for an object of ``written`` (or one it names)
    a concurrent prune removed, write that again from memory (same bytes, same id) and retry,
    then look after ``written`` (``keep.add``). Every ledger transaction outside
    ``Ledger._transact`` (which does the same inside its own retries) goes through here."""
    for tries in range(PRUNED_RETRIES + 1):
        try:
            commit(build())
            break
        except GitError as exc:
            if not pruned_object(exc) or tries == PRUNED_RETRIES:
                raise
            keep.rewrite(written)
    keep.add(written)
