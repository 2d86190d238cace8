"""Conflict prediction: workstreams that may run at the same time and may change the same path.

Two workstreams can run concurrently (and so conflict when integrated) when the DAG does not
order them: neither is an ancestor of the other. If their ``scope.allow`` patterns can match a
common path, we warn, naming one such path and suggesting a ``depends_on`` (the earlier one in
topological order as the dependency, which can never create a cycle since they are unordered).

Rules and limits (documented for users in docs/plan.md):
- An empty ``scope.allow`` means "any path". Such a workstream overlaps with every workstream it
  is not ordered with, so it gets ONE warning counting them (with a few examples) instead of one
  warning per pair.
- ``scope.deny`` is ignored: the prediction is conservative (it may warn about a path that deny
  excludes, never misses an overlap of allow patterns).
- Whether two patterns overlap is decided by ``spec.scope.patterns_overlap``; this module only
  prunes the candidates so 1,000 workstreams stay fast: reachability is one Python-int bitset per
  node, and patterns are indexed by their literal leading directories (two patterns can only
  match a common path if one's literal prefix is a prefix of the other's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice

from uet_git.plan.dag import Plan
from uet_git.spec.models import Workstream
from uet_git.spec.scope import matches, patterns_overlap, validate_pattern

_GLOB = frozenset("*?[")
_CUT = frozenset("*?[]")
_EXAMPLES = 5
_STARSTAR = "**"


def ancestor_bits(plan: Plan) -> list[int]:
    """For each node (by position in ``plan.ids``) the bitset of its ancestors."""
    anc = [0] * len(plan.ids)
    index = plan.index
    for i, ws_id in enumerate(plan.ids):
        m = 0
        for d in plan.deps[ws_id]:
            j = index[d]
            m |= anc[j] | (1 << j)
        anc[i] = m
    return anc


@dataclass(frozen=True)
class _Pat:
    """A pattern taken apart for cheap necessary tests (``patterns_overlap`` decides)."""

    text: str
    comps: tuple[tuple[str, bool, str, str], ...]  # (component, is glob, literal start, end)
    key: tuple[str, ...]  # literal leading components: every match starts with them
    literal: bool  # a plain file path: matches exactly itself
    head: int  # components before the first ``**`` (all of them without one)
    tail: int  # components after the last ``**`` (all of them without one)
    starstar: bool
    valid: bool  # invalid patterns (refused by the loader) overlap nothing

    @classmethod
    def of(cls, text: str) -> _Pat:
        names = [c for c in text.split("/") if c]
        if text.endswith("/"):  # ``dir/`` is ``dir/**``
            names.append(_STARSTAR)
        comps = tuple((c, *_affixes(c)) for c in names)
        key: list[str] = []
        for c, glob, _, _ in comps:
            if glob or c == _STARSTAR:
                break
            key.append(c)
        ss = _STARSTAR in names
        head = names.index(_STARSTAR) if ss else len(names)
        tail = names[::-1].index(_STARSTAR) if ss else len(names)
        literal = len(key) == len(names) and not text.endswith("/")
        return cls(text, comps, tuple(key), literal, head, tail, ss,
                   validate_pattern(text) is None)


def _affixes(comp: str) -> tuple[bool, str, str]:
    """(is a glob, literal start, literal end): every name the component matches has them."""
    cuts = [k for k, ch in enumerate(comp) if ch in _CUT]
    if not cuts or not any(ch in _GLOB for ch in comp):
        return False, comp, comp
    return True, comp[: cuts[0]], comp[cuts[-1] + 1:]


def _start(p: _Pat) -> str:
    """The literal start of the component after ``p.key`` ("" if none)."""
    if len(p.comps) == len(p.key):
        return ""
    _, glob, start, _ = p.comps[len(p.key)]
    return start if glob else ""


def _comp_may_overlap(x: tuple[str, bool, str, str], y: tuple[str, bool, str, str]) -> bool:
    """False only if no path component matches both component patterns."""
    if not x[1]:
        if not y[1]:
            return x[0] == y[0]
        x, y = y, x
    _, _, px, sx = x
    name, glob_y, py, sy = y
    if not glob_y:
        return len(name) >= len(px) + len(sx) and name.startswith(px) and name.endswith(sx)
    return (px.startswith(py) or py.startswith(px)) and (sx.endswith(sy) or sy.endswith(sx))


def _may_overlap(a: _Pat, b: _Pat) -> bool:
    """A necessary condition for ``patterns_overlap``: the components before the first ``**``
    of either pattern must pairwise admit a common name, and so must those after the last one
    (counted from the end); without ``**`` the lengths must be equal."""
    ca, cb = a.comps, b.comps
    if not a.starstar and not b.starstar:
        return len(ca) == len(cb) and all(map(_comp_may_overlap, ca, cb))
    head = min(a.head, b.head)
    if not all(map(_comp_may_overlap, ca[:head], cb[:head])):
        return False
    return all(_comp_may_overlap(ca[-1 - k], cb[-1 - k]) for k in range(min(a.tail, b.tail)))


def _overlap(a: _Pat, b: _Pat) -> str | None:
    """An example path both patterns match, or None."""
    if not (a.valid and b.valid and _may_overlap(a, b)):
        return None
    if a.literal:
        return a.text if matches(b.text, a.text) else None
    if b.literal:
        return b.text if matches(a.text, b.text) else None
    return patterns_overlap(a.text, b.text)


def predict_conflicts(plan: Plan, workstreams: Sequence[Workstream]) -> list[str]:
    """Warnings, one per unordered pair of workstreams whose ``scope.allow`` can match a common
    path (plus one per workstream with an empty allow list that is unordered with others).
    Sorted by the topological position of the pair. Workstreams not in ``plan`` are ignored."""
    index = plan.index
    wss = sorted((ws for ws in workstreams if ws.id in index), key=lambda w: index[w.id])
    anc = ancestor_bits(plan)
    n = len(plan.ids)

    def ordered(i: int, j: int) -> bool:
        return bool((anc[j] >> i) & 1 or (anc[i] >> j) & 1)

    warnings: list[tuple[int, int, str]] = []

    # Workstreams that may touch anything: one warning each.
    unscoped = [index[ws.id] for ws in wss if not ws.scope.allow]
    if unscoped:
        desc = _descendant_bits(plan, anc)
        everyone = (1 << n) - 1
        for i in unscoped:
            free = everyone & ~(anc[i] | desc[i] | (1 << i))
            count = free.bit_count()
            if not count:
                continue
            shown = [plan.ids[j] for j in islice(_bits(free), _EXAMPLES)]
            more = f", ... ({count} in all)" if count > _EXAMPLES else ""
            warnings.append((i, -1, (
                f"{plan.ids[i]} has no scope.allow, so it may change any path and may conflict "
                f"with {count} workstream{'s' if count != 1 else ''} the plan does "
                f"not order with it ({', '.join(shown)}{more}); "
                f"add scope.allow or depends_on"
            )))

    best = _scoped_pairs(plan, wss, ordered)
    for (i, j), (_, _, hit) in best.items():
        a, b = plan.ids[i], plan.ids[j]
        warnings.append((i, j, (
            f"{a} and {b} may conflict: both may change {hit} (add depends_on: [{a}] to {b})"
        )))
    warnings.sort(key=lambda t: (t[0], t[1]))
    return [w for _, _, w in warnings]


def _scoped_pairs(plan: Plan, wss: Sequence[Workstream],
                  ordered: Callable[[int, int], bool]) -> dict[tuple[int, int],
                                                               tuple[str, str, str]]:
    """``{(i, j): (pattern of i, pattern of j, example path)}``, i < j positions in
    ``plan.ids``, for each unordered pair whose non-empty ``scope.allow`` lists overlap."""
    index = plan.index
    # Work on distinct pattern texts first (workstreams often share patterns), indexed by their
    # literal leading components: two patterns can only match a common path if one's key is a
    # prefix of (or equal to) the other's.
    owners: dict[str, list[int]] = defaultdict(list)
    for ws in wss:
        for text in dict.fromkeys(ws.scope.allow):
            owners[text].append(index[ws.id])
    pats = {text: _Pat.of(text) for text in sorted(owners)}
    # by_key[key][start]: patterns with that key whose next component begins with the literal
    # ``start`` ("" when it is ``**``, starts with a wildcard, or there is none). A component
    # can only match a common name if one literal start is a prefix of the other's.
    by_key: dict[tuple[str, ...], dict[str, list[_Pat]]] = defaultdict(lambda: defaultdict(list))
    for pat in pats.values():
        by_key[pat.key][_start(pat)].append(pat)

    # best[(i, j)], i < j: the smallest (pattern of i, pattern of j, example) found so far.
    best: dict[tuple[int, int], tuple[str, str, str]] = {}
    for p in pats.values():
        for k in range(len(p.key) + 1):
            bucket = by_key.get(p.key[:k])
            if not bucket:
                continue
            # Each pair is met from the side whose start is the longer one; equal starts are
            # met from both sides, and the text order keeps one.
            name = p.key[k] if k < len(p.key) else _start(p)
            for m in range(len(name) + 1):
                for q in bucket.get(name[:m], ()):
                    if k == len(p.key) and m == len(name) and q.text < p.text:
                        continue
                    hit = _overlap(p, q)
                    if hit is None:
                        continue
                    for i in owners[p.text]:
                        for j in owners[q.text]:
                            if i == j or ordered(i, j):
                                continue
                            cand = (p.text, q.text, hit) if i < j else (q.text, p.text, hit)
                            pair = (i, j) if i < j else (j, i)
                            old = best.get(pair)
                            if old is None or cand < old:
                                best[pair] = cand

    return best


def implicit_edges(plan: Plan, workstreams: Sequence[Workstream]) -> list[tuple[str, str, str]]:
    """``(earlier, later, example path)`` for each pair of workstreams the plan does not order
    whose ``scope.allow`` patterns can match a common path, ``earlier`` first in plan order;
    sorted by plan position. With ``[run] predicted_conflicts = "serialise"`` the later one
    waits for the earlier's commit (or failure) so it starts from the merged result.

    A workstream with an empty ``scope.allow`` (any path) makes no implicit edge: it would
    serialise it with everything; it keeps its warning."""
    index = plan.index
    wss = sorted((ws for ws in workstreams if ws.id in index), key=lambda w: index[w.id])
    anc = ancestor_bits(plan)

    def ordered(i: int, j: int) -> bool:
        return bool((anc[j] >> i) & 1 or (anc[i] >> j) & 1)

    best = _scoped_pairs(plan, wss, ordered)
    return [(plan.ids[i], plan.ids[j], hit) for (i, j), (_, _, hit) in sorted(best.items())]


def _descendant_bits(plan: Plan, anc: list[int]) -> list[int]:
    desc = [0] * len(plan.ids)
    index = plan.index
    for i in range(len(plan.ids) - 1, -1, -1):
        m = 0
        for d in plan.dependents[plan.ids[i]]:
            j = index[d]
            m |= desc[j] | (1 << j)
        desc[i] = m
    return desc


def _bits(mask: int) -> Iterable[int]:
    """Set bit positions of ``mask``, ascending."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
