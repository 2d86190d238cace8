"""The DAG: validation errors, deterministic order, waves, critical path, bounds, export."""

from __future__ import annotations

import json
import random

import pytest

from uet_git.errors import UetError
from uet_git.plan.dag import Plan, PlanError, build_plan, estimates
from uet_git.spec.models import Workstream


def ws(id: str, *deps: str, estimate: float | None = None, source: str | None = None,
       allow: list[str] | None = None, title: str = "") -> Workstream:
    w = Workstream(id=id, depends_on=list(deps), estimate=estimate, title=title,
                   scope={"allow": allow or []})
    if source:
        w._source = source
    return w


def problems(*wss: Workstream) -> list[str]:
    with pytest.raises(PlanError) as exc:
        build_plan(list(wss))
    assert str(exc.value) == "\n".join(exc.value.problems)
    return exc.value.problems


# -- errors -------------------------------------------------------------------------------

def test_plan_error_is_a_user_error_with_exit_code_2():
    err = PlanError(["a", "b"])
    assert isinstance(err, UetError)
    assert err.exit_code == 2
    assert str(err) == "a\nb"


def test_unknown_dependency_names_both_ends():
    assert problems(ws("ws-a"), ws("ws-b", "ws-x")) == [
        "ws-b: depends_on: unknown workstream 'ws-x'"
    ]


def test_unknown_dependency_names_the_source_file():
    assert problems(ws("ws-b", "ws-x", source="workstreams/b.yaml")) == [
        "workstreams/b.yaml:ws-b: depends_on: unknown workstream 'ws-x'"
    ]


def test_self_dependency_reported_once():
    assert problems(ws("a", "a", "a")) == ["a: depends_on: depends on itself"]


def test_two_cycle():
    assert problems(ws("a", "b"), ws("b", "a")) == [
        "a: depends_on: dependency cycle: a -> b -> a"
    ]


def test_three_cycle_printed_as_the_cycle():
    out = problems(ws("c", "a"), ws("a", "b"), ws("b", "c"))
    assert out == ["a: depends_on: dependency cycle: a -> b -> c -> a"]


def test_cycle_not_polluted_by_nodes_that_depend_on_it():
    # d and e hang off the cycle (and are stuck in Kahn's algorithm) but are not in it.
    out = problems(ws("a", "b"), ws("b", "c"), ws("c", "a"), ws("d", "a"), ws("e", "d"),
                   ws("f"))
    assert out == ["a: depends_on: dependency cycle: a -> b -> c -> a"]


def test_two_disjoint_cycles_both_reported_sorted():
    out = problems(ws("y", "x"), ws("x", "y"), ws("q", "p"), ws("p", "r"), ws("r", "q"),
                   ws("ok"))
    assert out == [
        "p: depends_on: dependency cycle: p -> r -> q -> p",
        "x: depends_on: dependency cycle: x -> y -> x",
    ]


def test_cycle_in_a_bigger_component_prints_one_shortest_simple_cycle():
    # One strongly connected component {a, b, c, d} with cycles a-b-a and a-c-d-a.
    out = problems(ws("a", "c", "b"), ws("b", "a"), ws("c", "d"), ws("d", "a"))
    assert out == ["a: depends_on: dependency cycle: a -> b -> a"]


def test_all_problems_at_once_one_per_line():
    out = problems(
        ws("a", "a", source="a.yaml"),
        ws("b", "nope", source="b.yaml"),
        ws("c", "d", source="c.yaml"),
        ws("d", "c", source="d.yaml"),
    )
    assert out == [
        "a.yaml:a: depends_on: depends on itself",
        "b.yaml:b: depends_on: unknown workstream 'nope'",
        "c.yaml:c: depends_on: dependency cycle: c -> d -> c",
    ]


def test_duplicate_id_is_an_error_naming_both_files():
    out = problems(ws("a", source="one.yaml"), ws("a", source="two.yaml"))
    assert out == ["two.yaml:a: id: duplicate id, also defined in one.yaml"]


def test_diamond_is_fine():
    plan = build_plan([ws("d", "b", "c"), ws("b", "a"), ws("c", "a"), ws("a")])
    assert plan.ids == ["a", "b", "c", "d"]
    assert plan.deps["d"] == ["b", "c"]
    assert plan.dependents["a"] == ["b", "c"]
    assert plan.waves() == [["a"], ["b", "c"], ["d"]]
    assert plan.descendants("a") == {"b", "c", "d"}
    assert plan.descendants("d") == set()
    assert plan.ancestors("d") == {"a", "b", "c"}


def test_repeated_dependency_counts_once():
    plan = build_plan([ws("a"), ws("b", "a", "a")])
    assert plan.deps["b"] == ["a"]
    assert plan.dependents["a"] == ["b"]
    assert plan.edges() == [("a", "b")]


# -- order --------------------------------------------------------------------------------

def test_topological_order_ties_broken_by_id():
    plan = build_plan([ws("z"), ws("m", "z"), ws("b"), ws("a", "m")])
    # ready at start: b, z -> b first; then z; m; a
    assert plan.ids == ["b", "z", "m", "a"]


def test_topological_order_is_independent_of_input_order():
    rng = random.Random(7)
    items = [ws(f"n{i:03d}", *[f"n{j:03d}" for j in range(i) if rng.random() < 0.05])
             for i in range(200)]
    first = build_plan(items).ids
    for _ in range(5):
        rng.shuffle(items)
        assert build_plan(items).ids == first
    pos = {n: i for i, n in enumerate(first)}
    for w in items:
        for d in w.depends_on:
            assert pos[d] < pos[w.id]


def test_empty_plan():
    plan = build_plan([])
    assert plan.ids == []
    assert plan.waves() == []
    assert plan.critical_path() == (0.0, [])
    assert plan.lower_bound(4) == 0.0
    assert plan.to_json(4, warnings=[])["nodes"] == []


# -- timing -------------------------------------------------------------------------------

def chain_and_side() -> Plan:
    #   a(10) -> b(5) -> d(1)
    #   c(30) ---------> d
    #   e (no estimate = 1)
    return build_plan([
        ws("a", estimate=10), ws("b", "a", estimate=5), ws("c", estimate=30),
        ws("d", "b", "c", estimate=1), ws("e"),
    ])


def test_estimates_default_to_one():
    assert estimates([ws("a", estimate=2.5), ws("b")]) == {"a": 2.5, "b": 1.0}


def test_critical_path_uses_estimates():
    plan = chain_and_side()
    assert plan.critical_path() == (31.0, ["c", "d"])
    # Without estimates every node weighs 1: the longest chain wins.
    assert plan.critical_path({k: 1 for k in plan.ids}) == (3.0, ["a", "b", "d"])


def test_critical_path_with_partial_explicit_weights():
    plan = chain_and_side()
    # Measured durations override estimates only for the ids given.
    assert plan.critical_path({"a": 100}) == (106.0, ["a", "b", "d"])
    assert plan.weights({"a": 100, "unknown": 5})["a"] == 100.0
    assert "unknown" not in plan.weights({"unknown": 5})


def test_critical_path_ties_go_to_earlier_node():
    plan = build_plan([ws("b"), ws("a"), ws("c", "a"), ws("d", "b")])
    assert plan.critical_path() == (2.0, ["a", "c"])


def test_remaining_is_longest_path_to_a_sink_including_self():
    plan = chain_and_side()
    assert plan.remaining() == {"a": 16.0, "b": 6.0, "c": 31.0, "d": 1.0, "e": 1.0}


def test_lower_bound_is_max_of_critical_path_and_total_over_jobs():
    plan = chain_and_side()
    assert plan.total_work() == 47.0
    assert plan.lower_bound(1) == 47.0
    assert plan.lower_bound(2) == 31.0  # 47 / 2 = 23.5 < 31
    assert plan.lower_bound(100) == 31.0
    wide = build_plan([ws(f"w{i}") for i in range(10)])
    assert wide.lower_bound(4) == 2.5
    with pytest.raises(ValueError):
        wide.lower_bound(0)


def test_waves_by_depth():
    plan = chain_and_side()
    assert plan.waves() == [["a", "c", "e"], ["b"], ["d"]]
    assert plan.levels() == {"a": 0, "c": 0, "e": 0, "b": 1, "d": 2}


# -- export -------------------------------------------------------------------------------

def test_to_json_shape():
    plan = build_plan([ws("a", title="First", estimate=2), ws("b", "a")])
    out = plan.to_json(3, warnings=["w1"])
    json.dumps(out)  # serialisable
    assert out == {
        "version": 1,
        "nodes": [
            {"id": "a", "title": "First", "depends_on": [], "estimate": 2.0, "weight": 2.0,
             "wave": 0, "remaining": 3.0},
            {"id": "b", "title": "", "depends_on": ["a"], "estimate": None, "weight": 1.0,
             "wave": 1, "remaining": 1.0},
        ],
        "edges": [["a", "b"]],
        "waves": [["a"], ["b"]],
        "critical_path": {"length": 3.0, "ids": ["a", "b"]},
        "jobs": 3,
        "lower_bound": 3.0,
        "total_work": 3.0,
        "warnings": ["w1"],
        "order": ["a", "b"],
    }


# -- scale --------------------------------------------------------------------------------

def test_five_thousand_nodes_build():
    rng = random.Random(1)
    n = 5000
    items = []
    for i in range(n):
        deps = {f"n{rng.randrange(i):05d}" for _ in range(min(i, 3))} if i else set()
        items.append(ws(f"n{i:05d}", *sorted(deps)))
    plan = build_plan(items)
    assert len(plan.ids) == n
    length, path = plan.critical_path()
    assert length == len(path) >= 2
    assert sum(len(w) for w in plan.waves()) == n
    assert max(plan.remaining().values()) == length


def test_long_chain_has_no_recursion_limit():
    n = 5000
    items = [ws(f"c{i:05d}", f"c{i + 1:05d}") for i in range(n - 1)] + [ws(f"c{n - 1:05d}")]
    items.append(ws(f"c{n - 1:05d}-x", "c00000"))
    plan = build_plan(items)
    assert plan.critical_path()[0] == n + 1
    # Closing the chain into one big cycle is reported as that cycle, without recursion errors.
    items[-2] = ws(f"c{n - 1:05d}", "c00000")
    out = problems(*items)
    assert len(out) == 1
    assert out[0].startswith("c00000: depends_on: dependency cycle: c00000 -> c00001 -> ")
    assert out[0].endswith(f" -> c{n - 1:05d} -> c00000")
