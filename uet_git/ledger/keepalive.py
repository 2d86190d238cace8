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
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from uet_git.errors import UetError
from uet_git.gitrepo import GitError, RefTransaction, objects
from uet_git.gitrepo.odb import CommitInfo, Person, has_object, list_tree
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import layout

RECENT_SECONDS = 2.0  # a commit younger than this is not settled (for a bare `git prune`)
RECHECK_SECONDS = 0.25  # an unsettled commit other than the newest is looked at this often
RECENT_MAX = 512  # unsettled commits kept at most (a gc.pid that never goes)
GC_PID_STALE = 3600.0  # seconds: a gc.pid this old is a dead gc's (git itself says 12 h)
PRUNED_RETRIES = 5  # a transaction refused for a just-pruned object is tried this often again


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


def fresh_handle(repo: Repo) -> Repo:
    """A handle with empty caches: libgit2 answers "exists" from its object cache for what
    this process wrote or read, even after another process pruned it from disk."""
    return Repo(workdir=repo.workdir, git_dir=repo.git_dir, common_dir=repo.common_dir)


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
        return commit

    def missing(self, repo: Repo, fresh: Repo | None = None) -> list[str]:
        """The objects of this commit (and the patch/candidate it names) not on disk
        (``fresh``: a handle without libgit2's object cache)."""
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
        gone.extend(oid for oid in self.named if not has_object(fresh, oid))
        return gone


class Keepalive:
    """The ledger commits of one writer not yet settled (see the module doc)."""

    def __init__(self, repo: Repo, run: str) -> None:
        self._repo = repo
        self._run = run
        self._pending: deque[Written] = deque()

    def add(self, written: Written) -> None:
        """``written`` is now named by the ledger ref: look after it."""
        self._pending.append(written)
        self.ensure()

    def rewrite(self, written: Written) -> None:
        """Write ``written`` again, and the patch/candidate commits it names that are gone
        while their trees are not."""
        written.write(self._repo)
        fresh = fresh_handle(self._repo)
        for oid, info in written.named.items():
            if not has_object(fresh, oid) and has_object(fresh, info.tree):
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
        fresh = fresh_handle(self._repo)
        newest = self._pending[-1]
        settled: list[Written] = []
        for written in list(self._pending):
            if not (force or written is newest or now - written.checked >= RECHECK_SECONDS):
                continue
            for _ in range(3):
                if not written.missing(self._repo, fresh):
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
