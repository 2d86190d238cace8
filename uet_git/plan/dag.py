"""The dependency graph of a set of workstreams: validation, topological order, waves,
critical path and the lower bound of a run's wall time.

Direction: ``a depends_on b`` is the edge ``b -> a`` in execution order (b runs first). A cycle
is printed in declaration order, ``a -> b -> a`` meaning "a depends on b, b depends on a".

Weights are seconds from ``estimate``, or 1 per workstream without one; every method taking
``weights`` accepts a mapping (e.g. durations measured in earlier runs) that overrides those
defaults for the ids it names.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from uet_git.errors import UetError
from uet_git.spec.models import Workstream

DEFAULT_WEIGHT = 1.0
JSON_VERSION = 1


class PlanError(UetError):
    """The workstream set is not a DAG. ``problems`` holds one line per problem; the message
    is those lines joined by newlines."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def estimates(workstreams: Sequence[Workstream]) -> dict[str, float]:
    """``{id: estimate or 1}``: the default weights."""
    return {
        ws.id: float(ws.estimate) if ws.estimate is not None else DEFAULT_WEIGHT
        for ws in workstreams
    }


def _where(ws: Workstream) -> str:
    return f"{ws.source}:{ws.id}" if ws.source else ws.id


@dataclass
class Plan:
    """A validated DAG. ``ids`` is the topological order (ties broken by id), ``deps[id]`` the
    workstream's distinct dependencies in declaration order, ``dependents[id]`` the workstreams
    that depend on it, sorted by id."""

    ids: list[str]
    deps: dict[str, list[str]]
    dependents: dict[str, list[str]]
    workstreams: dict[str, Workstream]
    index: dict[str, int] = field(default_factory=dict)  # id -> position in ``ids``

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {ws_id: i for i, ws_id in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    # -- weights -------------------------------------------------------------------------

    def weights(self, weights: Mapping[str, float] | None = None) -> dict[str, float]:
        """The weight of every node: ``weights`` where given, else estimate, else 1."""
        out = estimates(list(self.workstreams.values()))
        if weights:
            for ws_id, w in weights.items():
                if ws_id in out:
                    out[ws_id] = float(w)
        return out

    # -- shape ---------------------------------------------------------------------------

    def levels(self) -> dict[str, int]:
        """``{id: wave index}``: 0 for no dependencies, else 1 + the deepest dependency."""
        level: dict[str, int] = {}
        for ws_id in self.ids:
            level[ws_id] = 1 + max((level[d] for d in self.deps[ws_id]), default=-1)
        return level

    def waves(self) -> list[list[str]]:
        """Nodes grouped by level, each wave sorted by id. For display: the scheduler does not
        run wave by wave."""
        out: list[list[str]] = []
        for ws_id, lvl in self.levels().items():
            while len(out) <= lvl:
                out.append([])
            out[lvl].append(ws_id)
        for wave in out:
            wave.sort()
        return out

    def edges(self) -> list[tuple[str, str]]:
        """``(dependency, dependent)`` pairs, in topological order of the dependent, then of the
        dependency."""
        return [
            (d, ws_id)
            for ws_id in self.ids
            for d in sorted(self.deps[ws_id], key=self.index.__getitem__)
        ]

    def descendants(self, ws_id: str) -> set[str]:
        """Every workstream that depends on ``ws_id``, directly or transitively."""
        seen: set[str] = set()
        todo = deque(self.dependents[ws_id])
        while todo:
            n = todo.popleft()
            if n not in seen:
                seen.add(n)
                todo.extend(self.dependents[n])
        return seen

    def ancestors(self, ws_id: str) -> set[str]:
        """Every workstream ``ws_id`` depends on, directly or transitively."""
        seen: set[str] = set()
        todo = deque(self.deps[ws_id])
        while todo:
            n = todo.popleft()
            if n not in seen:
                seen.add(n)
                todo.extend(self.deps[n])
        return seen

    # -- timing --------------------------------------------------------------------------

    def remaining(self, weights: Mapping[str, float] | None = None) -> dict[str, float]:
        """``{id: longest weighted path from id to any sink, including id's own weight}`` — the
        work that must still happen one step after another once ``id`` starts."""
        w = self.weights(weights)
        rem: dict[str, float] = {}
        for ws_id in reversed(self.ids):
            rem[ws_id] = w[ws_id] + max((rem[d] for d in self.dependents[ws_id]), default=0.0)
        return rem

    def critical_path(
        self, weights: Mapping[str, float] | None = None
    ) -> tuple[float, list[str]]:
        """``(length, ids)`` of the heaviest chain. Ties go to the earlier node in ``ids``."""
        if not self.ids:
            return 0.0, []
        rem = self.remaining(weights)
        node = max(self.ids, key=lambda n: (rem[n], -self.index[n]))
        length = rem[node]
        path = [node]
        while self.dependents[node]:
            node = max(self.dependents[node], key=lambda n: (rem[n], -self.index[n]))
            path.append(node)
        return length, path

    def total_work(self, weights: Mapping[str, float] | None = None) -> float:
        return sum(self.weights(weights).values())

    def lower_bound(self, jobs: int, weights: Mapping[str, float] | None = None) -> float:
        """No schedule on ``jobs`` workers finishes sooner than
        ``max(critical path, total work / jobs)``."""
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        length, _ = self.critical_path(weights)
        return max(length, self.total_work(weights) / jobs)

    def queue_bound(self, jobs: int, weights: Mapping[str, float] | None = None, *,
                    verify: float = 0.0, verify_jobs: int = 0,
                    extra_edges: Sequence[tuple[str, str]] = ()) -> QueueBound:
        """The bound the verification queue aims at: ``max(critical path, total work /
        jobs)`` with each verification the gate needs counted: one per workstream (``verify``
        seconds, on its candidate; the worker's run on the tail of the queue is that one when
        nothing ahead changes), after its tool and before its dependents start. Tools use
        ``jobs`` slots, verifications also ``verify_jobs`` more; ``extra_edges`` (implicit
        edges of predicted conflicts) order workstreams like dependencies."""
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        w = self.weights(weights)
        after: dict[str, list[str]] = {k: list(v) for k, v in self.dependents.items()}
        for a, b in extra_edges:
            if a in after and b in after:
                after[a].append(b)
        rem: dict[str, float] = {}
        # Extra edges go forward in plan order like the real ones: reversed order still works.
        for ws_id in reversed(self.ids):
            rem[ws_id] = w[ws_id] + verify + max((rem[d] for d in after[ws_id]), default=0.0)
        critical = max(rem.values(), default=0.0)
        tools = sum(w.values())
        checks = verify * len(self.ids)
        value = max(critical, tools / jobs, (tools + checks) / (jobs + verify_jobs))
        return QueueBound(critical, tools, checks, jobs, verify_jobs, verify, value)

    # -- export --------------------------------------------------------------------------

    def to_json(
        self,
        jobs: int,
        weights: Mapping[str, float] | None = None,
        *,
        warnings: Sequence[str],
    ) -> dict[str, object]:
        """The stable JSON object of ``uet plan --json`` (fields documented in
        ``uet_git/cli/plan.py``). ``warnings``: the plan's warnings, predicted scope conflicts
        included (``overlap.predict_conflicts``, which builds on this module)."""
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        w = self.weights(weights)
        rem = self.remaining(weights)
        levels = self.levels()
        length, path = self.critical_path(weights)
        total = sum(w.values())
        nodes = []
        for ws_id in self.ids:
            ws = self.workstreams[ws_id]
            nodes.append({
                "id": ws_id,
                "title": ws.title,
                "depends_on": list(self.deps[ws_id]),
                "estimate": ws.estimate,
                "weight": w[ws_id],
                "wave": levels[ws_id],
                "remaining": rem[ws_id],
            })
        return {
            "version": JSON_VERSION,
            "nodes": nodes,
            "edges": [list(e) for e in self.edges()],
            "waves": self.waves(),
            "critical_path": {"length": length, "ids": path},
            "jobs": jobs,
            "lower_bound": max(length, total / jobs),
            "total_work": total,
            "warnings": list(warnings),
            "order": list(self.ids),
        }


@dataclass(frozen=True)
class QueueBound:
    """``Plan.queue_bound``: ``value = max(critical, tool_work / jobs, (tool_work +
    verify_work) / (jobs + verify_jobs))``."""

    critical: float  # the longest chain, a verification after each workstream
    tool_work: float
    verify_work: float
    jobs: int
    verify_jobs: int
    verify: float  # seconds per verification
    value: float

    def to_json(self) -> dict[str, float | int]:
        return {"value": self.value, "critical_path": self.critical,
                "tool_work": self.tool_work, "verify_work": self.verify_work,
                "jobs": self.jobs, "verify_jobs": self.verify_jobs,
                "verify_seconds": self.verify}


def build_plan(workstreams: Sequence[Workstream]) -> Plan:
    """Validate the dependency graph and return its Plan; raise PlanError listing every unknown
    dependency, self-dependency, duplicate id and cycle at once."""
    problems: list[str] = []
    by_id: dict[str, Workstream] = {}
    for ws in workstreams:
        if ws.id in by_id:
            other = by_id[ws.id].source or "?"
            problems.append(f"{_where(ws)}: id: duplicate id, also defined in {other}")
            continue
        by_id[ws.id] = ws

    deps: dict[str, list[str]] = {}
    for ws_id, ws in by_id.items():
        seen: dict[str, None] = {}
        for d in dict.fromkeys(ws.depends_on):  # a repeated dependency is reported once
            if d == ws_id:
                problems.append(f"{_where(ws)}: depends_on: depends on itself")
            elif d not in by_id:
                problems.append(f"{_where(ws)}: depends_on: unknown workstream {d!r}")
            else:
                seen[d] = None
        deps[ws_id] = list(seen)

    dependents: dict[str, list[str]] = {ws_id: [] for ws_id in by_id}
    for ws_id in sorted(by_id):
        for d in deps[ws_id]:
            dependents[d].append(ws_id)

    # Kahn's algorithm with a heap: among ready nodes the smallest id goes first.
    indegree = {ws_id: len(ds) for ws_id, ds in deps.items()}
    heap = [ws_id for ws_id, n in indegree.items() if n == 0]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        n = heapq.heappop(heap)
        order.append(n)
        for m in dependents[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(heap, m)

    if len(order) < len(by_id):
        stuck = {n for n, k in indegree.items() if k > 0}
        for cycle in _cycles(stuck, deps):
            problems.append(
                f"{_where(by_id[cycle[0]])}: depends_on: dependency cycle: "
                + " -> ".join(cycle)
            )
    if problems:
        raise PlanError(problems)
    return Plan(ids=order, deps=deps, dependents=dependents, workstreams=by_id)


def _cycles(nodes: set[str], deps: Mapping[str, list[str]]) -> list[list[str]]:
    """One shortest simple cycle per non-trivial strongly connected component among ``nodes``
    (closed: ``[a, b, a]``), starting at the component's smallest id; sorted by that id.

    Nodes left over by Kahn's algorithm are cycles plus whatever depends on them; only the
    strongly connected components are cycles."""
    cycles = []
    for comp in _sccs(nodes, deps):
        if len(comp) < 2:
            continue  # self-dependencies are reported (and dropped) earlier
        start = min(comp)
        # BFS along "depends on" edges inside the component, neighbours in id order, back to
        # ``start``: the shortest cycle through it, deterministic.
        parent: dict[str, str] = {}
        todo = deque([start])
        end = None
        while todo and end is None:
            n = todo.popleft()
            for m in sorted(d for d in deps[n] if d in comp):
                if m == start:
                    end = n
                    break
                if m not in parent:
                    parent[m] = n
                    todo.append(m)
        assert end is not None  # a strongly connected component of 2+ nodes has a cycle
        back = [end]
        while back[-1] != start:
            back.append(parent[back[-1]])
        cycles.append([*reversed(back), start])
    cycles.sort(key=lambda c: c[0])
    return cycles


def _sccs(nodes: set[str], deps: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iterative (no recursion limit on long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(d for d in deps[root] if d in nodes)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            n, it = work[-1]
            advanced = False
            for m in it:
                if m not in index:
                    index[m] = low[m] = counter
                    counter += 1
                    stack.append(m)
                    on_stack.add(m)
                    work.append((m, iter(sorted(d for d in deps[m] if d in nodes))))
                    advanced = True
                    break
                if m in on_stack:
                    low[n] = min(low[n], index[m])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[n])
            if low[n] == index[n]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == n:
                        break
                out.append(comp)
    return out
