"""The writer's queue: fewer, shared transactions (group commit).

``Ledger.record`` and ``record_chain`` queue their transitions (a ``Pending``); the first
caller that finds the writer's mutex free is the leader and writes EVERYTHING queued at that
moment as one ref transaction (the integrator's and the queue's ahead of the workers', each
workstream's own in order), while the others wait on the mutex and find theirs done;
``submit`` with ``done`` returns at once and a background thread writes it (a worker's
``queued``: the worker's slot takes the next tool meanwhile; ``state``/``states`` wait for
what is queued for the workstream they read, and run-level writes and ``close`` write the
queue first). When the group's transaction fails, each request is tried again alone, so a
failure reaches only the callers it concerns. What one group writes, and why that cannot lose
or misstate anything after a crash, is in ``writer``'s docstring.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from uet_git.errors import UetError
from uet_git.ledger.transition import Step


class Pending:
    """Transitions of one workstream queued for the writer (``Ledger.submit``)."""

    def __init__(self, ws: str, steps: tuple[Step, ...], attempt: int, first: bool,
                 done: Callable[[list[str]], None] | None) -> None:
        self.ws, self.steps, self.attempt, self.first, self.done = ws, steps, attempt, first, done
        self.oids: list[str] | None = None
        self.error: BaseException | None = None
        self._event = threading.Event()

    @property
    def finished(self) -> bool:
        return self._event.is_set()

    def finish(self, oids: list[str]) -> None:
        self.oids = oids
        self._event.set()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self._event.set()

    def value(self) -> list[str]:
        """The ledger commits (raises what the writer raised for it)."""
        self._event.wait()
        if self.error is not None:
            raise self.error
        assert self.oids is not None
        return self.oids


def ordered(queue: list[Pending]) -> list[Pending]:
    """The queue in writing order: the integrator's (``first``) ahead of the workers', except
    behind an earlier request of the same workstream (its transitions stay in order)."""
    behind = set()
    hoisted, rest = [], []
    for req in queue:
        if req.first and req.ws not in behind:
            hoisted.append(req)
        else:
            rest.append(req)
            behind.add(req.ws)
    return hoisted + rest


def _background_writer(ref: weakref.ReferenceType[GroupCommit]) -> None:
    """The thread that writes what callers queued without waiting; ends when idle (0.5 s)
    and is started again by the next such call. Holds its queue only while it writes."""
    while True:
        self = ref()
        if self is None:
            return
        with self._qlock:
            if not self._queue:
                self._wake.wait(0.5)
            if not self._queue or self.closed:
                self._writer = None
                return
        with self.mutex:
            if not self.writing:
                self.drain()
        del self


class GroupCommit:
    """The queue of one run's writer. ``write_group(batch)`` (called holding ``mutex``)
    writes a batch as one transaction, finishing or failing each request; held weakly, so a
    writer dropped without ``close`` can still go."""

    def __init__(self, run: str, mutex: threading.RLock,
                 write_group: Callable[[list[Pending]], None]) -> None:
        self.run = run
        self.mutex = mutex
        self._write_group = weakref.WeakMethod(write_group)  # type: ignore[arg-type]
        self._qlock = threading.Lock()
        self._wake = threading.Condition(self._qlock)
        self._queue: list[Pending] = []
        self._pending_ws: dict[str, int] = {}  # requests queued, per workstream
        self._async_errors: list[BaseException] = []
        self._writer: threading.Thread | None = None
        self.writing = False  # a group is being written (by the thread holding the mutex)
        self.closed = False

    def pending(self, ws: str | None = None) -> bool:
        """Whether anything (for ``ws``) is queued or being written, not yet durable."""
        return bool(self._pending_ws.get(ws)) if ws is not None else bool(self._pending_ws)

    def submit(self, req: Pending) -> None:
        """Queue ``req``; with ``req.done`` the background thread writes it."""
        with self._qlock:
            if self.closed:
                raise UetError(f"the ledger of run {self.run} is closed")
            self._queue.append(req)
            self._pending_ws[req.ws] = self._pending_ws.get(req.ws, 0) + 1
            if req.done is not None:
                if self._writer is None:
                    self._writer = threading.Thread(target=_background_writer,
                                                    args=(weakref.ref(self),), daemon=True,
                                                    name=f"uet-ledger-{self.run}")
                    self._writer.start()
                self._wake.notify()

    def wait(self, req: Pending) -> None:
        """Write the queue, ``req`` in it, unless the thread writing now took it: the
        caller that finds the mutex free is the leader and commits everyone's transitions."""
        while not req.finished:
            with self.mutex:
                if self.writing:
                    raise RuntimeError("Ledger.record inside a ledger transaction")
                if not req.finished:
                    self.drain()

    def flush_queued(self) -> None:
        """Before a run-level write: what workers queued goes first (history in order). A
        failure is left for ``take_errors`` to raise: it is not this write's. Not from inside
        a write (a repair's event): that one finishes the batch in hand. The mutex is taken
        even with nothing queued: a batch another thread took from the queue may still be
        being written, and ``flush`` returns only once it is."""
        with self.mutex:
            if not self.writing:
                self.drain()

    def take_errors(self) -> list[BaseException]:
        """The failures of requests queued without waiting, since the last call."""
        with self._qlock:
            errors, self._async_errors = self._async_errors, []
        return errors

    def close(self) -> None:
        """No more submits; the background writer ends."""
        with self._qlock:
            self.closed = True
            self._wake.notify_all()

    def _write(self, batch: list[Pending]) -> None:
        write = self._write_group()
        if write is None:  # the writer is gone: nothing can be recorded any more
            raise UetError(f"the ledger of run {self.run} is closed")
        write(batch)

    def drain(self) -> None:
        """Holding the mutex: write everything queued as ONE transaction; when that fails,
        each request alone (so one bad request fails only its caller)."""
        with self._qlock:
            batch = ordered(self._queue)
            self._queue.clear()
        if not batch:
            return
        self.writing = True
        try:
            try:
                self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0].finished:
                        batch[0].fail(exc)
                else:
                    for req in batch:
                        if req.finished:
                            continue
                        try:
                            self._write([req])
                        except Exception as exc1:
                            req.fail(exc1)
            except BaseException as exc:  # interrupted: nobody waits for it in vain
                for req in batch:
                    if not req.finished:
                        req.fail(exc)
                raise
        finally:
            self.writing = False
            with self._qlock:
                for req in batch:
                    left = self._pending_ws.get(req.ws, 1) - 1
                    if left > 0:
                        self._pending_ws[req.ws] = left
                    else:
                        self._pending_ws.pop(req.ws, None)
                    if req.done is not None and req.error is not None:
                        self._async_errors.append(req.error)
            for req in batch:
                if req.done is not None and req.error is None and req.oids is not None:
                    req.done(req.oids)
