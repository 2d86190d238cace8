"""A run writer's objects and ref transactions, kept true under concurrent git housekeeping
(a user's ``git gc``/``pack-refs``, a tool deleting refs) in the same repository:

- a held ref lock (``packed-refs.lock`` while ``pack-refs`` runs) is waited for, for up to
  ``LOCK_RETRY_SECONDS``; a lost compare-and-swap is never retried: the writer holds the
  run's lock, so it means the refs were moved behind its back;
- ``git gc --prune=now`` deletes what was unreachable when its walk began, so it can take
  objects written before the refs moved even after they moved: ``keepalive.Keepalive``
  looks after each ledger commit until it is safe and writes it again from memory when a
  prune took it (see there); git refusing a ref to a just-pruned object is answered the same
  way, after the prune ended;
- a tool that deletes the run's refs (``git update-ref -d`` of ``refs/uet/*``) makes the next
  transaction lose its compare-and-swap: the writer then finds its own refs gone, creates them
  again from what it holds in memory (ledger tip, state refs, patches, integration), commits
  the transaction, and the caller records a ``run: repair`` event saying so.

Durability (measured on this machine's ext4, 2 cores, medians): ref updates are fsynced
(``core.fsync=committed,reference``): +0.5 ms per transaction when idle, up to ~2.5 ms under
load, against ~0.1 ms without — kept, a transition costs ~2-4 ms either way. Objects are
written by libgit2, which does not fsync; fsyncing a transition's ~6 objects ourselves
measured ~9 ms (three times a whole transition), so it is not done. Objects are always written
before the refs that name them; after a power loss the filesystem decides, and ``uet fsck`` /
``git fsck`` report a ref to a lost object.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from uet_git.gitrepo import objects
from uet_git.gitrepo.odb import Person
from uet_git.gitrepo.refs import RefConflict, RefTransaction, RefUpdater
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.trailers import format_message
from uet_git.ledger import crash, layout
from uet_git.ledger.keepalive import (
    PRUNED_RETRIES,
    Keepalive,
    Written,
    pruned_object,
    pruning_gc,
    wait_for_gc,
)
from uet_git.ledger.memory import Memory
from uet_git.ledger.query import all_run_refs

LOCK_RETRY_SECONDS = 5.0  # how long a transaction waits for a ref lock another git holds


def commit_retrying(tx: RefTransaction) -> None:
    """Commit ``tx``, retrying with a short backoff for up to ``LOCK_RETRY_SECONDS`` while
    another git holds one of its ref locks (a user's ``git pack-refs``/``gc``). A lost
    compare-and-swap is never retried here."""
    deadline = time.monotonic() + LOCK_RETRY_SECONDS
    delay = 0.02
    while True:
        try:
            tx.commit()
            return
        except RefConflict as exc:
            if not exc.lock_held or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


class RefWriter:
    """The objects and ref transactions of one run's writer (see the module doc); the
    writer's mutex is held around every call."""

    def __init__(self, repo: Repo, mem: Memory, updater: RefUpdater, keep: Keepalive) -> None:
        self.repo = repo
        self.mem = mem
        self.updater = updater
        self.keep = keep

    def transaction(self) -> RefTransaction:
        return self.repo.transaction(self.updater)

    def identities(self) -> tuple[Person, Person]:
        """``(author, committer)`` as git would record them now."""
        return objects.identity(self.repo, "author"), objects.identity(self.repo, "committer")

    def new_commit(self, subject: str, body: str, trailers: list[tuple[str, str]],
                   files: Mapping[str, bytes], *, parent: str | None = None,
                   tree: str | None = None,
                   who: tuple[Person, Person] | None = None) -> Written:
        """A ledger commit on ``parent``'s ``tree`` (default: the tip) with ``files`` added,
        by ``who`` (``identities()``; default: asked now)."""
        author, committer = who or self.identities()
        written = Written(tree or self.mem.tree, dict(files), parent or self.mem.tip,
                          format_message(subject, body, trailers), author, committer)
        for tries in range(5):
            try:
                written.write(self.repo)
                return written
            except Exception:  # a prune took what it builds on: put that back, again
                if tries == 4:
                    raise
                self.keep.ensure(force=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def transact(self, build: Callable[[], RefTransaction], writtens: list[Written],
                 remember: Callable[[], None], crash_keys: Mapping[str, list[str]] | None,
                 what: str) -> list[str]:
        """Commit the transaction ``build()`` makes (naming ``writtens``, the last one the
        new ledger tip), then keep the memory and the objects true (see the module doc):
        retry a held ref lock, put back refs a tool deleted, write again what a concurrent
        prune removed. Returns the refs it put back (the caller records a ``run: repair``)."""
        hooked = bool(crash_keys) and crash.armed()
        if hooked:
            assert crash_keys is not None
            keys = dict(crash_keys)

            def before_commit() -> None:
                for key, tos in keys.items():
                    crash.crash_point("after-prepare", key, tos)

            self.updater.before_commit = before_commit
        last = writtens[-1]
        restored: list[str] = []
        rewrites = 0
        try:
            while True:
                try:
                    commit_retrying(build())
                    break
                except RefConflict as exc:
                    if not exc.lock_held and not restored:
                        restored = self.restore_deleted_refs()
                        if restored:
                            continue
                    why = "could not lock its refs" if exc.lock_held else "lost a race"
                    raise RefConflict(f"run {self.mem.run}: {what} {why} and was not "
                                      f"recorded: {exc}", lock_held=exc.lock_held) from None
                except GitError as exc:
                    # git refuses a ref to an object a concurrent prune removed between our
                    # write and the transaction: write it again (same bytes, same id).
                    if not pruned_object(exc) or rewrites >= PRUNED_RETRIES:
                        raise
                    rewrites += 1
                    # A prune still running would take the rewritten objects as well (it
                    # deletes whatever its walk did not reach, however new): let it end.
                    wait_for_gc(self.repo, pruning_gc(self.repo))
                    for written in writtens:
                        self.keep.rewrite(written)
                except BaseException:
                    # Interrupted (Ctrl-C, a broken pipe) after "commit" may have reached git:
                    # the ledger ref says whether it happened; keep the memory true to it.
                    if self.repo.read_ref(layout.ledger_ref(self.mem.run)) == last.commit:
                        remember()
                    raise
        finally:
            if hooked:
                self.updater.before_commit = None
        remember()
        self.keep.add_all(writtens)
        return restored

    def restore_deleted_refs(self) -> list[str]:
        """After a lost compare-and-swap: when refs of this run are gone (a tool deleted them)
        and none has another value, create them again from memory; returns their names
        (``[]``: not that case, nothing done)."""
        want = self.mem.own_refs()
        have = all_run_refs(self.repo, self.mem.run)
        if any(have.get(name) not in (None, oid) for name, oid in want.items()):
            return []
        missing = sorted(name for name in want if name not in have)
        if not missing:
            return []
        tx = self.transaction()
        for name in missing:
            tx.create(name, want[name])
        commit_retrying(tx)
        return missing
