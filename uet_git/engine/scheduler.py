"""The scheduling core: which workstream runs next and which patch integrates next.

Pure bookkeeping over a Plan, no threads and no git, so it is tested on its own. The run loop
(``engine/loop.py``) owns one Scheduler and is the only thread that touches it.

Life of a workstream here: ``waiting`` (a dependency is not committed yet) -> ``ready`` ->
``running`` (a worker has it) -> ``queued`` (its patch waits for the integrator) ->
``integrating`` -> ``committed``; or ``failed`` (quarantined, blocked, dropped) at any point.
There are no waves: the moment a worker is free it takes the ready workstream with the longest
remaining critical path (ties: plan order).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from uet_git.plan.dag import Plan

WAITING = "waiting"
READY = "ready"
RUNNING = "running"
QUEUED = "queued"
INTEGRATING = "integrating"
COMMITTED = "committed"
FAILED = "failed"


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        weights: Mapping[str, float] | None = None,
        *,
        deterministic: bool = False,
        committed: Iterable[str] = (),
        failed: Iterable[str] = (),
        queued: Iterable[str] = (),
        ready: Iterable[str] = (),
        include: Iterable[str] | None = None,
    ) -> None:
        """``committed``/``failed``/``queued`` seed a resumed run; ``ready`` forces workstreams
        ready whatever their dependencies (a recorded patch to re-check). ``include`` limits the
        run to those ids (everything else counts as neither done nor failed: out of the run)."""
        self.plan = plan
        self.deterministic = deterministic
        self.remaining = plan.remaining(weights)
        self.included = set(plan.ids if include is None else include)
        self.state: dict[str, str] = {}
        self._ready: list[tuple[float, int, str]] = []
        for ws_id in plan.ids:
            if ws_id in self.included:
                self.state[ws_id] = WAITING
        for ws_id in committed:
            self.state[ws_id] = COMMITTED
        for ws_id in failed:
            self.state[ws_id] = FAILED
        for ws_id in queued:
            self.state[ws_id] = QUEUED
        forced = set(ready)
        for ws_id in plan.ids:
            if self.state.get(ws_id) == WAITING and (ws_id in forced or self._deps_done(ws_id)):
                self._make_ready(ws_id)

    # -- queries ---------------------------------------------------------------------------

    def _deps_done(self, ws_id: str) -> bool:
        return all(self.state.get(d) == COMMITTED for d in self.plan.deps[ws_id])

    def _key(self, ws_id: str) -> tuple[float, int, str]:
        return (-self.remaining[ws_id], self.plan.index[ws_id], ws_id)

    def ids_in(self, *states: str) -> list[str]:
        return [ws_id for ws_id in self.plan.ids if self.state.get(ws_id) in states]

    def has_ready(self) -> bool:
        return bool(self._ready)

    def finished(self) -> bool:
        """Nothing left that could still make progress."""
        return not any(s in (READY, RUNNING, QUEUED, INTEGRATING) for s in self.state.values())

    def stuck(self) -> list[str]:
        """Workstreams still waiting when nothing else can happen (their dependencies are out
        of the run or never committed)."""
        return self.ids_in(WAITING) if self.finished() else []

    # -- workers ---------------------------------------------------------------------------

    def _make_ready(self, ws_id: str) -> None:
        self.state[ws_id] = READY
        heapq.heappush(self._ready, self._key(ws_id))

    def pop_ready(self) -> str | None:
        """The ready workstream with the longest remaining critical path, now ``running``."""
        while self._ready:
            _, _, ws_id = heapq.heappop(self._ready)
            if self.state.get(ws_id) == READY:
                self.state[ws_id] = RUNNING
                return ws_id
        return None

    def worker_done(self, ws_id: str, *, queued: bool) -> None:
        """The worker finished: its patch waits for the integrator, or it failed."""
        self.state[ws_id] = QUEUED if queued else FAILED

    def requeue(self, ws_id: str) -> None:
        """A running workstream was given back unfinished (interrupted): ready again."""
        self._make_ready(ws_id)

    # -- integrator ------------------------------------------------------------------------

    def next_to_integrate(self) -> str | None:
        """The queued patch to integrate now, or None (nothing queued, or in deterministic mode
        the next in plan order is not queued yet). Any queued patch is a topological choice:
        a workstream only runs after its dependencies are committed."""
        if self.deterministic:
            for ws_id in self.plan.ids:
                s = self.state.get(ws_id)
                if s in (None, COMMITTED, FAILED):
                    continue
                if s == INTEGRATING:
                    return None
                if s == QUEUED:
                    self.state[ws_id] = INTEGRATING
                    return ws_id
                # Waiting/ready/running ahead in plan order: wait for it, unless it can never
                # be queued before something queued behind it depends on nothing it provides.
                return None
            return None
        queued = [ws_id for ws_id, s in self.state.items() if s == QUEUED]
        if not queued or any(s == INTEGRATING for s in self.state.values()):
            return None
        ws_id = min(queued, key=self._key)
        self.state[ws_id] = INTEGRATING
        return ws_id

    def next_to_enqueue(self) -> str | None:
        """For the verification queue, which holds several patches at once: the queued patch
        to append to it now (``integrating`` from then on), or None. Deterministic mode keeps
        plan order (the next unfinished workstream in plan order, once it is queued)."""
        if self.deterministic:
            for ws_id in self.plan.ids:
                s = self.state.get(ws_id)
                if s in (None, COMMITTED, FAILED, INTEGRATING):
                    continue
                if s == QUEUED:
                    self.state[ws_id] = INTEGRATING
                    return ws_id
                return None
            return None
        queued = [ws_id for ws_id, s in self.state.items() if s == QUEUED]
        if not queued:
            return None
        ws_id = min(queued, key=self._key)
        self.state[ws_id] = INTEGRATING
        return ws_id

    def committed(self, ws_id: str) -> list[str]:
        """``ws_id`` is committed; return the workstreams that became ready."""
        self.state[ws_id] = COMMITTED
        woke = []
        for dep in self.plan.dependents[ws_id]:
            if self.state.get(dep) == WAITING and self._deps_done(dep):
                self._make_ready(dep)
                woke.append(dep)
        return woke

    def failed(self, ws_id: str) -> list[str]:
        """``ws_id`` failed; return its transitive dependents to record as blocked (in plan
        order). They are all waiting: a dependent never starts before its dependencies commit."""
        self.state[ws_id] = FAILED
        blocked = []
        for dep in sorted(self.plan.descendants(ws_id), key=self.plan.index.__getitem__):
            if self.state.get(dep) in (WAITING, READY):
                self.state[dep] = FAILED
                blocked.append(dep)
        return blocked

    def take_unstarted(self, ids: Iterable[str]) -> list[str]:
        """Remove those of ``ids`` that have not started (waiting or ready) and mark them failed
        (the breaker opened for their tool). Returns them in plan order."""
        wanted = set(ids)
        taken = [ws_id for ws_id in self.plan.ids
                 if ws_id in wanted and self.state.get(ws_id) in (WAITING, READY)]
        for ws_id in taken:
            self.state[ws_id] = FAILED
        return taken

    # -- deterministic bases -----------------------------------------------------------------

    def base_anchor(self, ws_id: str) -> str | None:
        """In deterministic mode a workstream starts from the integration tip right after its
        last dependency (in plan order) was committed, not from whatever the tip is when a
        worker frees up; None = the run's base."""
        deps = self.plan.deps[ws_id]
        if not deps:
            return None
        return max(deps, key=self.plan.index.__getitem__)
