"""The bound the verification queue aims at, and implicit edges from predicted conflicts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.conftest import make_repo, uet
from uet_git.plan.dag import build_plan
from uet_git.plan.overlap import implicit_edges
from uet_git.spec.models import Scope, Workstream


def _ws(i: str, deps: list[str] | None = None, est: float = 1.0,
        allow: list[str] | None = None) -> Workstream:
    return Workstream(id=i, depends_on=deps or [], estimate=est,
                      scope=Scope(allow=allow or []))


def test_bound_counts_a_verification_per_workstream():
    # 16 independent 1 s workstreams, 1 s verification each, 4 jobs + 1 verify slot.
    plan = build_plan([_ws(f"w{i:02}") for i in range(16)])
    b = plan.queue_bound(4, verify=1.0, verify_jobs=1)
    assert (b.critical, b.tool_work, b.verify_work) == (2.0, 16.0, 16.0)
    assert b.value == max(2.0, 16 / 4, 32 / 5)
    # Without verification it is the plan's lower bound.
    assert plan.queue_bound(4).value == plan.lower_bound(4)


def test_bound_chain_puts_a_verification_between_each_step():
    plan = build_plan([_ws("a", est=2), _ws("b", ["a"], est=3), _ws("x", est=1)])
    b = plan.queue_bound(8, verify=0.5)
    assert b.critical == 2 + 0.5 + 3 + 0.5


def test_implicit_edges_only_for_unordered_scoped_overlaps():
    wss = [_ws("a", allow=["src/**"]), _ws("b", allow=["src/app.py"]),
           _ws("c", ["a"], allow=["src/**"]), _ws("d", allow=["docs/**"]), _ws("e")]
    plan = build_plan(wss)
    edges = implicit_edges(plan, wss)
    assert [(a, b) for a, b, _ in edges] == [("a", "b"), ("b", "c")]
    assert edges[0][2] == "src/app.py"
    # The bound orders them like dependencies: a -> b -> c.
    b = plan.queue_bound(4, extra_edges=[(x, y) for x, y, _ in edges])
    assert b.critical == 3.0


def test_uet_plan_shows_implicit_edges_and_the_bound(tmp_path: Path):
    files = {"README.md": "x\n"}
    for ws_id, allow in (("a", ["src/**"]), ("b", ["src/app.py"]), ("c", ["docs/**"])):
        files[f"workstreams/{ws_id}.yaml"] = yaml.safe_dump(
            {"id": ws_id, "command": "true", "estimate": 2, "scope": {"allow": allow}})
    repo = make_repo(tmp_path / "r", files)
    r = uet("plan", "--jobs", "2", "--verify-seconds", "1", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "implicit edges (predicted conflicts, serialised): 1" in r.stdout
    assert "  a -> b (both may change src/app.py)" in r.stdout
    assert "bound of the verification queue (1 s per verification, --verify-seconds): 6 = " \
           "max(critical path 6, tools 6 / 2, (tools + verifications 3) / (2 + 1 verify " \
           "jobs))" in r.stdout
    data = json.loads(uet("plan", "--json", "--verify-seconds", "1", cwd=repo).stdout)
    assert data["implicit_edges"] == [["a", "b", "src/app.py"]]
    assert data["predicted_conflicts"] == "serialise"
    assert data["queue_bound"]["critical_path"] == 6.0
