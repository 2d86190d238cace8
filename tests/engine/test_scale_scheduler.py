"""The scheduler's work per step does not grow with the run: a pick, a hold check and the next
patch to integrate look at the workstreams concerned, never at every waiting one."""

from __future__ import annotations

from tests.engine.test_scheduler import plan_of, simulate
from uet_git.engine.scheduler import INTEGRATING, QUEUED, READY, WAITING, Scheduler

WIDE = 2000


class CountingDeps(dict[str, list[str]]):
    """``plan.deps`` that counts the workstreams it was asked about."""

    looked: int = 0

    def __getitem__(self, ws: str) -> list[str]:
        self.looked += 1
        return super().__getitem__(ws)


def wide_plan():
    # `gate` holds back WIDE waiting workstreams; `a` unlocks the long chain `c`; s1, s2 are
    # short side work.
    spec = {"gate": [], "a": [], "c": ["a"], "s1": [], "s2": []}
    spec.update({f"w{i:04d}": ["gate"] for i in range(WIDE)})
    return plan_of(spec)


def test_a_pick_with_a_commit_in_flight_looks_only_at_its_dependents() -> None:
    plan = wide_plan()
    w = {ws: 1.0 for ws in plan.ids} | {"gate": 50.0, "c": 60.0, "s1": 4.0, "s2": 4.0}
    s = Scheduler(plan, w, jobs=3)
    s.unlock_estimate = 1.0
    assert [s.pop_ready(free=3), s.pop_ready(free=2)] == ["a", "gate"]
    s.worker_done("a", queued=True)
    deps = CountingDeps(plan.deps)
    plan.deps = deps
    # Would the freed worker rather wait for c (the long chain a's commit unlocks)? No: the
    # WIDE waiting ones make the run work-bound. Deciding it looked at the dependencies of c
    # alone, the one workstream a commit in flight unlocks, not at the WIDE waiting ones.
    assert s.pop_ready(free=1) == "s1"
    assert 0 < deps.looked <= 4
    assert s.next_to_integrate() == "a"
    assert s.committed("a") == ["c"]
    assert s.pop_ready(free=1) == "c"


def test_the_state_sets_follow_every_assignment() -> None:
    plan = plan_of({"a": [], "b": ["a"], "c": []})
    s = Scheduler(plan, jobs=2)
    assert s.state.members[READY] == {"a", "c"} and s.state.members[WAITING] == {"b"}
    assert s.unstarted_weight() == 3.0
    assert [s.pop_ready(free=2), s.pop_ready(free=1)] == ["a", "c"]
    assert s.unstarted_weight() == 1.0  # b
    s.worker_done("a", queued=True)
    assert s.next_to_integrate() == "a" and s.state.members[INTEGRATING] == {"a"}
    s.state["a"] = QUEUED  # the loop gives an interrupted integration back
    assert s.state.members[QUEUED] == {"a"} and not s.state.members[INTEGRATING]
    assert s.next_to_integrate() == "a"
    s.committed("a")
    assert s.unstarted_weight() == 1.0  # b, ready now
    assert s.state.members[READY] == {"b"} and s.pop_ready(free=1) == "b"
    assert s.unstarted_weight() == 0.0


def test_a_wide_run_simulates_to_its_bound() -> None:
    # The hold check applies at any size (it no longer stops past 1,000 workstreams): wide
    # work keeps every worker busy.
    plan = plan_of({f"w{i:04d}": [] for i in range(WIDE)})
    w = dict.fromkeys(plan.ids, 1.0)
    assert simulate(plan, w, jobs=8, verify=0.0, hold=True) == WIDE / 8
