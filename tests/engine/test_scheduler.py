"""The scheduling core on plain plans: critical-path order, no wave barriers, blocking,
deterministic integration order."""

from __future__ import annotations

from uet_git.engine.scheduler import COMMITTED, FAILED, QUEUED, RUNNING, Scheduler
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Workstream


def plan_of(spec: dict[str, list[str]], estimates: dict[str, float] | None = None):
    est = estimates or {}
    return build_plan(
        [Workstream(id=k, depends_on=v, estimate=est.get(k)) for k, v in spec.items()]
    )


def test_longest_remaining_path_first_then_plan_order():
    # a -> b -> c is the long chain; x and y are single steps.
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"], "x": [], "y": []})
    s = Scheduler(plan)
    assert s.pop_ready() == "a"
    assert s.pop_ready() == "x"
    assert s.pop_ready() == "y"
    assert s.pop_ready() is None


def test_estimates_change_the_order():
    plan = plan_of({"a": [], "b": ["a"], "x": []}, {"x": 10, "a": 1, "b": 1})
    s = Scheduler(plan, plan.weights())
    assert s.pop_ready() == "x"
    s2 = Scheduler(plan, {"a": 1, "b": 1, "x": 1})
    assert s2.pop_ready() == "a"


def test_no_wave_barrier_dependent_ready_as_soon_as_its_deps_commit():
    plan = plan_of({"a": [], "b": ["a"], "slow": []})
    s = Scheduler(plan)
    assert {s.pop_ready(), s.pop_ready()} == {"a", "slow"}
    s.worker_done("a", queued=True)
    assert s.next_to_integrate() == "a"
    # "slow" is still running: b becomes ready anyway.
    assert s.committed("a") == ["b"]
    assert s.state["slow"] == RUNNING
    assert s.pop_ready() == "b"


def test_failure_blocks_transitive_dependents_only():
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "x"], "x": []})
    s = Scheduler(plan)
    assert s.pop_ready() == "a"
    assert s.pop_ready() == "x"
    s.worker_done("a", queued=False)
    assert s.failed("a") == ["b", "c", "d"]
    assert s.state["x"] == RUNNING
    s.worker_done("x", queued=True)
    assert s.next_to_integrate() == "x"
    assert s.committed("x") == []
    assert s.finished()
    assert s.stuck() == []


def test_one_integration_at_a_time():
    plan = plan_of({"a": [], "b": []})
    s = Scheduler(plan)
    s.pop_ready()
    s.pop_ready()
    s.worker_done("a", queued=True)
    s.worker_done("b", queued=True)
    first = s.next_to_integrate()
    assert first is not None
    assert s.next_to_integrate() is None
    s.committed(first)
    assert s.next_to_integrate() not in (None, first)


def test_deterministic_waits_for_plan_order():
    plan = plan_of({"a": [], "b": []})
    s = Scheduler(plan, deterministic=True)
    s.pop_ready()
    s.pop_ready()
    s.worker_done("b", queued=True)
    assert s.next_to_integrate() is None  # a comes first in plan order and is still running
    s.worker_done("a", queued=True)
    assert s.next_to_integrate() == "a"
    s.committed("a")
    assert s.next_to_integrate() == "b"


def test_deterministic_skips_failed():
    plan = plan_of({"a": [], "b": []})
    s = Scheduler(plan, deterministic=True)
    s.pop_ready()
    s.pop_ready()
    s.worker_done("b", queued=True)
    s.worker_done("a", queued=False)
    s.failed("a")
    assert s.next_to_integrate() == "b"


def test_seeded_from_a_resumed_run():
    plan = plan_of({"a": [], "b": ["a"], "c": ["b"], "q": [], "z": ["q"]})
    s = Scheduler(plan, committed=["a"], queued=["b"], failed=["q", "z"])
    assert s.state["b"] == QUEUED
    assert s.pop_ready() is None  # c waits for b
    assert s.next_to_integrate() == "b"
    assert s.committed("b") == ["c"]
    assert s.state["z"] == FAILED and s.state["a"] == COMMITTED


def test_take_unstarted_for_the_breaker():
    plan = plan_of({"a": [], "b": [], "c": ["a"]})
    s = Scheduler(plan)
    assert s.pop_ready() == "a"
    assert s.take_unstarted(["a", "b", "c"]) == ["b", "c"]
    assert s.state["a"] == RUNNING


def test_include_limits_the_run_and_stuck_reports_orphans():
    plan = plan_of({"a": [], "b": ["a"]})
    s = Scheduler(plan, include=["b"])
    assert s.pop_ready() is None
    assert s.finished()
    assert s.stuck() == ["b"]


def test_base_anchor_is_last_dependency_in_plan_order():
    plan = plan_of({"a": [], "b": [], "c": ["b", "a"]})
    s = Scheduler(plan)
    assert s.base_anchor("c") == "b"
    assert s.base_anchor("a") is None


# -- implicit edges (predicted conflicts) -------------------------------------------------


def test_implicit_edge_serialises_and_a_failure_does_not_block():
    plan = plan_of({"a": [], "b": [], "c": []})
    s = Scheduler(plan, soft=[("a", "b")])
    assert {s.pop_ready(), s.pop_ready()} == {"a", "c"}
    assert s.pop_ready() is None  # b waits for a's commit
    s.worker_done("a", queued=True)
    assert s.next_to_integrate() == "a"
    assert s.committed("a") == ["b"]
    s2 = Scheduler(plan, soft=[("a", "b")])
    s2.pop_ready()
    assert s2.failed("a") == []  # b is not blocked ...
    assert "b" in {s2.pop_ready(), s2.pop_ready()}  # ... it runs


def test_next_to_enqueue_takes_several_queued_patches():
    plan = plan_of({"a": [], "b": [], "c": ["a"]})
    s = Scheduler(plan)
    s.pop_ready(), s.pop_ready()
    s.worker_done("a", queued=True)
    s.worker_done("b", queued=True)
    assert s.next_to_enqueue() == "a"
    assert s.next_to_enqueue() == "b"  # the one-at-a-time integrator would wait
    assert s.next_to_enqueue() is None


# -- holding a worker for a commit in flight ------------------------------------------------


def simulate(plan, weights, jobs: int, verify: float, *, hold: bool) -> float:
    """The makespan of a run on ``jobs`` workers and one integrator that takes ``verify``
    seconds per patch, driven by the Scheduler (an event simulation, no threads)."""
    s = Scheduler(plan, weights, jobs=jobs if hold else None)
    s.unlock_estimate = verify
    now, free = 0.0, jobs
    running: list[tuple[float, str]] = []  # (end, ws)
    integrating: tuple[float, str] | None = None
    while not s.finished():
        while free and (ws := s.pop_ready(free=free)) is not None:
            running.append((now + weights[ws], ws))
            free -= 1
        if integrating is None and (nxt := s.next_to_integrate()) is not None:
            integrating = (now + verify, nxt)
        events = sorted(running) + ([integrating] if integrating else [])
        end, ws = min(events)
        now = end
        if integrating == (end, ws):
            integrating = None
            s.committed(ws)
        else:
            running.remove((end, ws))
            free += 1
            s.worker_done(ws, queued=True)
    return now


def test_a_freed_worker_waits_for_the_critical_chain_instead_of_short_work():
    # a (1 s) unlocks c (5 s), the critical chain; s1 and s2 (4 s) are off it. Greedy, the
    # worker freed by a takes s2 while a is verified and c starts only when s1 ends.
    plan = plan_of({"a": [], "c": ["a"], "s1": [], "s2": []})
    w = {"a": 1.0, "c": 5.0, "s1": 4.0, "s2": 4.0}
    greedy = simulate(plan, w, jobs=2, verify=1.0, hold=False)
    held = simulate(plan, w, jobs=2, verify=1.0, hold=True)
    assert (greedy, held) == (10.0, 9.0)
    # The bound: critical path a + verify + c + verify = 8; the rest of the work fits beside.


def test_no_holding_when_the_work_is_wide():
    # Three 4 s side tasks: the run is work-bound, holding a worker would only lose time.
    plan = plan_of({"a": [], "c": ["a"], "s1": [], "s2": [], "s3": []})
    w = {"a": 1.0, "c": 5.0, "s1": 4.0, "s2": 4.0, "s3": 4.0}
    assert simulate(plan, w, jobs=2, verify=1.0, hold=True) == \
        simulate(plan, w, jobs=2, verify=1.0, hold=False)


def test_no_holding_for_work_shorter_than_a_commit():
    plan = plan_of({"a": [], "c": ["a"], "s1": [], "s2": []})
    w = {"a": 1.0, "c": 5.0, "s1": 4.0, "s2": 0.5}
    s = Scheduler(plan, w, jobs=2)
    s.unlock_estimate = 1.0
    assert {s.pop_ready(free=2), s.pop_ready(free=1)} == {"a", "s1"}
    s.worker_done("a", queued=True)
    assert s.pop_ready(free=1) == "s2"  # 0.5 s: done before a's commit lands
