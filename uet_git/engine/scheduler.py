"""The scheduling core: which workstream runs next and which patch integrates next.

Pure bookkeeping over a Plan, no threads and no git, so it is tested on its own. The run loop
(``engine/loop.py``) owns one Scheduler and is the only thread that touches it.

Life of a workstream here: ``waiting`` (a dependency is not committed yet) -> ``ready`` ->
``running`` (a worker has it) -> ``queued`` (its patch waits for the integrator) ->
``integrating`` -> ``committed``; or ``failed`` (quarantined, blocked, dropped) at any point.
There are no waves: the moment a worker is free it takes the ready workstream with the longest
remaining critical path (ties: plan order).

Implicit edges (``soft``: ``plan/overlap.implicit_edges`` under ``[run] predicted_conflicts =
"serialise"``): a workstream predicted to conflict with an earlier one (plan order) is ready
only once that one is committed or failed, so it starts from the merged result instead of
running beside it and losing at integration. Unlike a dependency, a failure does not block.

Holding a worker (``jobs`` given): a freed worker does not take the ready workstream when a
waiting one whose dependencies are all committed or in the integration queue has a longer
remaining path, the run is path-bound (that path is longer than the unstarted work spread over
the workers) and the ready one would still run when the commit in flight lands (its weight is
more than ``unlock_estimate``, the seconds an integration takes in this run). Greedy is right
when the work is wide, holding is right when one chain decides the end.

Cost per step does not grow with the run (B4 runs 10,000 workstreams): ``state`` keeps a set
of the workstreams in each state, the queued ones are a heap, the unstarted weight a running
sum, and the hold check looks only at the dependents of patches in flight.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping

from uet_git.plan.dag import Plan

WAITING = "waiting"
READY = "ready"
RUNNING = "running"
QUEUED = "queued"
INTEGRATING = "integrating"
COMMITTED = "committed"
FAILED = "failed"
UNSTARTED = (WAITING, READY)
IN_FLIGHT = (QUEUED, INTEGRATING)
LIVE = (READY, RUNNING, QUEUED, INTEGRATING)
TERMINAL = (None, COMMITTED, FAILED)  # a workstream never leaves these within a run


class States(dict[str, str]):
    """``{ws: state}`` that keeps, as it is assigned, the workstreams in each state
    (``members``), and tells ``moved(ws, before, after)`` of every change. Only plain
    assignment changes it (nothing here deletes)."""

    def __init__(self, moved: Callable[[str, str | None, str], None]) -> None:
        super().__init__()
        self.members: dict[str, set[str]] = {}
        self._moved = moved

    def __setitem__(self, ws: str, state: str) -> None:
        before = self.get(ws)
        if before == state:
            return
        super().__setitem__(ws, state)
        if before is not None:
            self.members[before].discard(ws)
        self.members.setdefault(state, set()).add(ws)
        self._moved(ws, before, state)

    def count(self, state: str) -> int:
        return len(self.members.get(state, ()))


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
        soft: Iterable[tuple[str, str]] = (),
        jobs: int | None = None,
    ) -> None:
        """``committed``/``failed``/``queued`` seed a resumed run; ``ready`` forces workstreams
        ready whatever their dependencies (a recorded patch to re-check). ``include`` limits the
        run to those ids (everything else counts as neither done nor failed: out of the run)."""
        self.plan = plan
        self.deterministic = deterministic
        self.weight = plan.weights(weights)
        self.remaining = plan.remaining(weights)
        self.soft: dict[str, list[str]] = {}
        self.soft_dependents: dict[str, list[str]] = {}
        for earlier, later in soft:
            if earlier in plan.index and later in plan.index and earlier != later:
                self.soft.setdefault(later, []).append(earlier)
                self.soft_dependents.setdefault(earlier, []).append(later)
        self.jobs = jobs
        self.unlock_estimate = 0.0
        self.included = set(plan.ids if include is None else include)
        self._ready: list[tuple[float, int, str]] = []
        self._queued: list[tuple[float, int, str]] = []  # lazily pruned: see _moved
        self._unstarted = 0.0  # the weight of waiting and ready workstreams (a running sum)
        self._terminal_prefix = 0  # plan.ids[:n] are all terminal (deterministic mode)
        self.state: States = States(self._moved)
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

    def _moved(self, ws_id: str, before: str | None, after: str) -> None:
        if after == QUEUED:
            heapq.heappush(self._queued, self._key(ws_id))
        w = self.weight.get(ws_id, 0.0)
        if before in UNSTARTED:
            self._unstarted -= w
        if after in UNSTARTED:
            self._unstarted += w

    def unstarted_weight(self) -> float:
        """The weight of the waiting and ready workstreams."""
        return self._unstarted

    def _exact_unstarted(self) -> float:
        return math.fsum(self.weight[w] for s in UNSTARTED for w in self.state.members.get(s, ()))

    # -- queries ---------------------------------------------------------------------------

    def _deps_done(self, ws_id: str) -> bool:
        return all(self.state.get(d) == COMMITTED for d in self.plan.deps[ws_id]) and all(
            self.state.get(d) in (None, COMMITTED, FAILED) for d in self.soft.get(ws_id, ()))

    def _key(self, ws_id: str) -> tuple[float, int, str]:
        return (-self.remaining[ws_id], self.plan.index[ws_id], ws_id)

    def ids_in(self, *states: str) -> list[str]:
        return [ws_id for ws_id in self.plan.ids if self.state.get(ws_id) in states]

    def has_ready(self) -> bool:
        return bool(self._ready)

    def finished(self) -> bool:
        """Nothing left that could still make progress."""
        return not any(self.state.count(s) for s in LIVE)

    def stuck(self) -> list[str]:
        """Workstreams still waiting when nothing else can happen (their dependencies are out
        of the run or never committed)."""
        return self.ids_in(WAITING) if self.finished() else []

    # -- workers ---------------------------------------------------------------------------

    def _make_ready(self, ws_id: str) -> None:
        self.state[ws_id] = READY
        heapq.heappush(self._ready, self._key(ws_id))

    def pop_ready(self, *, free: int = 1) -> str | None:
        """The ready workstream with the longest remaining critical path, now ``running``; None
        when a worker should rather wait for a commit in flight (see the module doc; ``free``:
        the workers free now)."""
        while self._ready and self.state.get(self._ready[0][2]) != READY:
            heapq.heappop(self._ready)
        if not self._ready or self.hold(self._ready[0][2], free):
            return None
        _, _, ws_id = heapq.heappop(self._ready)
        self.state[ws_id] = RUNNING
        return ws_id

    def imminent(self) -> list[str]:
        """Waiting workstreams whose dependencies are all committed or in the integration
        queue (a commit in flight unlocks them), longest remaining path first."""
        # Such a workstream depends on one in flight: only their dependents are looked at.
        near: set[str] = set()
        for s in IN_FLIGHT:
            for d in self.state.members.get(s, ()):
                near.update(self.plan.dependents[d], self.soft_dependents.get(d, ()))
        out = []
        for ws_id in near:
            if self.state.get(ws_id) != WAITING:
                continue
            deps = [*self.plan.deps[ws_id], *self.soft.get(ws_id, ())]
            if deps and all(self.state.get(d) in (COMMITTED, QUEUED, INTEGRATING, FAILED, None)
                            for d in deps) and any(self.state.get(d) in (QUEUED, INTEGRATING)
                                                   for d in deps) and \
                    all(self.state.get(d) != FAILED for d in self.plan.deps[ws_id]):
                out.append(ws_id)
        return sorted(out, key=self._key)

    def hold(self, ready: str, free: int = 1) -> bool:
        """Whether a freed worker should leave ``ready`` for now (see the module doc)."""
        if self.jobs is None:
            return False
        soon = self.imminent()
        if not soon or len(soon) < free:
            return False  # a worker stays free for each chain about to be unlocked
        top = soon[0]
        if self.remaining[top] <= self.remaining[ready]:
            return False
        if self.weight[ready] <= self.unlock_estimate:
            return False  # done before the commit lands
        path = self.remaining[top] * self.jobs
        unstarted = self._unstarted
        if math.isclose(path, unstarted, rel_tol=1e-9, abs_tol=1e-9):
            unstarted = self._exact_unstarted()  # the running sum may have drifted: decide exactly
        return path >= unstarted

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
            for ws_id in self._unfinished_in_plan_order():
                s = self.state.get(ws_id)
                if s in TERMINAL:
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
        if self.state.count(INTEGRATING):
            return None
        return self._take_queued()

    def next_to_enqueue(self) -> str | None:
        """For the verification queue, which holds several patches at once: the queued patch
        to append to it now (``integrating`` from then on), or None. Deterministic mode keeps
        plan order (the next unfinished workstream in plan order, once it is queued)."""
        if self.deterministic:
            for ws_id in self._unfinished_in_plan_order():
                s = self.state.get(ws_id)
                if s in (*TERMINAL, INTEGRATING):
                    continue
                if s == QUEUED:
                    self.state[ws_id] = INTEGRATING
                    return ws_id
                return None
            return None
        return self._take_queued()

    def _take_queued(self) -> str | None:
        """The queued patch with the longest remaining path (ties: plan order), now
        ``integrating``."""
        while self._queued:
            ws_id = heapq.heappop(self._queued)[2]
            if self.state.get(ws_id) == QUEUED:
                self.state[ws_id] = INTEGRATING
                return ws_id
        return None

    def _unfinished_in_plan_order(self) -> Iterable[str]:
        """``plan.ids`` from the first one not terminal (the terminal prefix is skipped once:
        nothing leaves a terminal state within a run)."""
        ids = self.plan.ids
        n = self._terminal_prefix
        while n < len(ids) and self.state.get(ids[n]) in TERMINAL:
            n += 1
        self._terminal_prefix = n
        return (ids[i] for i in range(n, len(ids)))

    def committed(self, ws_id: str) -> list[str]:
        """``ws_id`` is committed; return the workstreams that became ready."""
        self.state[ws_id] = COMMITTED
        return self._wake(ws_id)

    def _wake(self, ws_id: str) -> list[str]:
        woke = []
        for dep in [*self.plan.dependents[ws_id], *self.soft_dependents.get(ws_id, ())]:
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
        self._wake(ws_id)  # those that only waited for it (implicit edges) go ahead
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
        deps = [*self.plan.deps[ws_id],
                *(d for d in self.soft.get(ws_id, ()) if self.state.get(d) == COMMITTED)]
        if not deps:
            return None
        return max(deps, key=self.plan.index.__getitem__)
