"""The live view's counts line, kept as transitions arrive, says what a recount of every
workstream's state says (seeded, resumed, running, in any order of events)."""

from __future__ import annotations

import io
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from uet_git.cli.render import COUNT_ORDER, Reporter

STATES = ["pending", "created", "validated", "queued", "committed", "quarantined", "blocked"]
WS = [f"w{i}" for i in range(6)]

event = st.one_of(
    st.tuples(st.just("transition"), st.sampled_from(WS), st.sampled_from(STATES)),
    st.tuples(st.just("seed"), st.sampled_from(WS), st.sampled_from(STATES)),
    st.tuples(st.just("worker"), st.integers(0, 2), st.sampled_from([None, *WS])),
)


def recount(r: Reporter) -> str:
    running = {ws for idx, (ws, _, _) in r.workers.items() if idx >= 0}
    c = Counter(s for ws, s in r.states.items() if not (s == "pending" and ws in running))
    c["running"] = len(running)
    return ", ".join(f"{k} {c[k]}" for k in COUNT_ORDER if c.get(k)) or "nothing to do"


@given(st.lists(event, max_size=40))
def test_the_counts_line_equals_a_recount(events: list[tuple]) -> None:
    r = Reporter("live", io.StringIO())
    r.start("R", WS[:3], jobs=3, target="main", base="0" * 40)
    for kind, a, b in events:
        if kind == "transition":
            r.transition(a, r.states.get(a), b)
        elif kind == "seed":
            r.seed({a: b})
        else:
            r.worker(a, b, "tool")
        assert r.counts_line() == recount(r)
