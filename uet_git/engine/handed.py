"""Verify once (``engine/queue.py``): the candidates handed to workers for their acceptance.

A worker whose tool ended judges its patch on the queue's tail (``worker_tail``: the patch on
the last candidate of the chain, the candidates handed to the workers before it included), so
that when nothing ahead of it changes, the queue's candidate for it is that tree and the
verdict cache answers. The handed chain (patch -> candidate, in the order handed out) follows
the queue's own tail (``publish``): rebuilt on it where it moved, so that workers whose tools
end together each judge the tree the queue will make, not all the same tail.

A worker's acceptance that fails (on its tail, then alone) takes its patch out of the handed
chain at once (``failed``, seen through ``FailureTap``): the patch reaches the queue a suspect
or quarantined, never in the chain as handed, so a worker asking for a tail while the failed
one runs alone gets a tail without it; with it, the queue's candidate for that worker's patch
is made without the failed one, a tree no worker judged, and judged again (B5's failing
variant: one more 1 s verification for each patch whose tool ended during that run).

Shared between worker threads (``worker_tail``, ``failed``) and the loop thread (the rest):
the one part of the queue with a lock.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from uet_git.engine.context import RunContext
from uet_git.engine.events import Observer
from uet_git.engine.verify import make_candidate
from uet_git.gitrepo import odb
from uet_git.gitrepo.trailers import parse_trailers


class HandedTail:
    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._chain_tail: str | None = None
        self.handed: dict[str, str] = {}
        self.offered: dict[str, str] = {}  # what each worker was given (handed may be rebuilt)
        self.handed_at: dict[str, float] = {}  # monotonic time each patch was handed out
        # ws -> (patch, attempt) of the patches workers asked a tail for (their trailers):
        # what the queue's `add` would otherwise read from the ledger, which waits for the
        # worker's `queued` to be written (a whole fsynced transaction on the loop thread,
        # before the commit's own; unread, the two go in one group transaction).
        self.arriving: dict[str, tuple[str, int]] = {}
        self.asked: dict[str, str] = {}  # ws -> the patch its worker last asked a tail for

    def publish(self, tail: str | None) -> None:
        """``tail``: the queue's own tail (None: unknown). ``ctx.queue_tail``: where a patch
        queued now would be built: the handed chain, rebuilt on ``tail`` where it moved."""
        with self._lock:
            self._chain_tail = tail
            self._relink()

    def _relink(self) -> None:
        """The handed chain rebuilt on the queue's tail where it moved (under the lock)."""
        base = self._chain_tail
        for patch, cand in list(self.handed.items()):
            if base is None:
                break
            if odb.get_commit(self.ctx.repo, cand).parent != base:
                made = make_candidate(self.ctx.repo, patch, base)
                if made.conflicts or made.commit is None:
                    del self.handed[patch]
                    continue
                cand = self.handed[patch] = made.commit
            base = cand
        self.ctx.queue_tail = base

    def worker_tail(self, patch: str) -> str | None:
        """For a worker's acceptance (a worker thread; ``RunContext.tail_candidate``): the
        patch on the queue's tail, the candidates handed to other workers included, or None
        (no tail known, it does not apply there, or the tail is its own parent: judged as
        it is)."""
        info = odb.get_commit(self.ctx.repo, patch)
        t = parse_trailers(info.message)
        ws, attempt = t.get("Uet-Workstream"), t.get("Uet-Attempt", "")
        with self._lock:
            if ws:
                self.asked[ws] = patch
            if ws and attempt.isdigit():
                self.arriving[ws] = (patch, int(attempt))
            base = self.ctx.queue_tail if self._chain_tail is not None else None
            if base is None:
                return None
            self.handed_at[patch] = time.monotonic()
            if info.parent == base:
                self.handed[patch] = patch
                self.ctx.queue_tail = patch
                return None
            made = make_candidate(self.ctx.repo, patch, base)
            if made.conflicts or made.commit is None:
                return None
            self.handed[patch] = self.offered[patch] = made.commit
            self.ctx.queue_tail = made.commit
            return made.commit

    def failed(self, ws_id: str) -> None:
        """``ws_id``'s worker acceptance failed (a worker thread): its patch leaves the handed
        chain, the ones handed after it are rebuilt without it. What its worker was given
        stays known (``place``): the queue takes the patch as a suspect if it arrives."""
        with self._lock:
            patch = self.asked.get(ws_id)
            if patch is None or patch not in self.handed:
                return
            del self.handed[patch]
            if self._chain_tail is not None:
                self._relink()

    def arrived(self, ws_id: str) -> tuple[str, int] | None:
        """(patch, attempt) of ``ws_id``'s patch when its worker asked for a tail."""
        with self._lock:
            return self.arriving.pop(ws_id, None)

    def place(self, patch: str) -> tuple[str | None, list[str], float | None]:
        """What its worker was given, the patches handed out before it, and when it was."""
        with self._lock:
            order = list(self.handed)
            before = order[:order.index(patch)] if patch in self.handed else []
            return self.offered.get(patch), before, self.handed_at.get(patch)

    def still_handed(self, patches: list[str]) -> list[str]:
        """Those of ``patches`` still handed out (not in the queue, not gone)."""
        with self._lock:
            return [p for p in patches if p in self.handed]

    def coming(self) -> bool:
        """Whether patches are on their way to the queue (handed out, not arrived)."""
        with self._lock:
            return bool(self.handed)

    def forget(self, patch: str | None) -> None:
        """A handed-out patch reached the queue or left the run: no longer ahead of others."""
        if patch is None:
            return
        with self._lock:
            self.handed.pop(patch, None)
            self.offered.pop(patch, None)
            self.handed_at.pop(patch, None)


class FailureTap:
    """The run's observer with the workers' failed acceptances passed to ``tail.failed`` as
    they end (the worker path reports each acceptance run through the observer and tells the
    queue nothing before its patch is queued). Everything else goes to ``inner`` unchanged."""

    def __init__(self, inner: Observer, tail: HandedTail) -> None:
        self.inner = inner
        self.tail = tail

    def step_finished(self, ws: str, worker: int, step: str, *, attempt: int = 1,
                      ok: bool = True, detail: str = "") -> None:
        # A worker's (numbered from 0), not a verifier's (INTEGRATOR and below).
        if step == "acceptance" and not ok and isinstance(worker, int) and worker >= 0:
            self.tail.failed(ws)
        self.inner.step_finished(ws, worker, step, attempt=attempt, ok=ok, detail=detail)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "inner":  # copy/pickle probes, before __init__
            raise AttributeError(name)
        return getattr(self.inner, name)
