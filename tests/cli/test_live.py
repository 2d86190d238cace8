"""Watching a run, in process: the live-state file the running process keeps (written,
throttled, removed at the end, stale when its process is gone), the ETA from the plan's
weights, the step events of ``uet run --json`` with ISO times, ``--quiet``, and the DAG for
Graphviz and Mermaid."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess as sp
import sys
import time
from pathlib import Path

from tests.conftest import make_repo
from uet_git.cli.render import Reporter, dag_dot, dag_mermaid
from uet_git.engine.events import NullObserver
from uet_git.engine.live import LiveRun, measured_weights
from uet_git.gitrepo import Repo
from uet_git.ledger.live import eta_seconds, live_path, pid_alive, proc_start, read_live
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Workstream

RUN = "20261201-101500-abcd"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_the_live_file_follows_the_workers_and_goes_at_the_end(tmp_path: Path):
    repo = Repo.open(make_repo(tmp_path / "r"))
    live = LiveRun(repo, NullObserver(), interval=0.05)
    live.start(RUN, ["a", "b"], jobs=2, target="main", base="0" * 40)
    path = live_path(repo, RUN)
    assert path == repo.common_dir / "uet" / "live" / f"{RUN}.json"
    seen = read_live(repo, RUN)
    assert seen is not None and seen.live and seen.pid == os.getpid() and seen.jobs == 2
    assert seen.running == []
    live.worker(0, "a", "tool")
    live.worker(-1, "b", "acceptance")
    time.sleep(0.15)  # a change within the interval is written when it is over
    seen = read_live(repo, RUN)
    assert seen is not None
    assert [(r.ws, r.worker, r.stage) for r in seen.running] == [("b", -1, "acceptance"),
                                                                 ("a", 0, "tool")]
    live.worker(0, None)
    live.tick()
    time.sleep(0.15)
    seen = read_live(repo, RUN)
    assert seen is not None and [r.ws for r in seen.running] == ["b"]
    # No temporary file is left beside it (atomic replace).
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    live.finish({"run": RUN}, [])
    assert not path.exists() and read_live(repo, RUN) is None


def test_a_live_file_whose_process_is_gone_is_stale(tmp_path: Path):
    repo = Repo.open(make_repo(tmp_path / "r"))
    proc = sp.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path = live_path(repo, RUN)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run": RUN, "pid": proc.pid, "started": time.time(),
                                "jobs": 1, "running": [{"ws": "a", "worker": 0,
                                                        "stage": "tool", "since": 1.0}]}))
    seen = read_live(repo, RUN)
    assert seen is not None and not seen.alive and not seen.live
    # A pid that lives but started at another time (reused) is not the run's process.
    assert pid_alive(os.getpid(), proc_start(os.getpid()))
    assert not pid_alive(os.getpid(), (proc_start(os.getpid()) or 0) + 1)
    path.write_text("{not json")
    assert read_live(repo, RUN) is None


def test_timings_of_the_steps_go_to_the_ledger_evidence(tmp_path: Path):
    repo = Repo.open(make_repo(tmp_path / "r"))
    live = LiveRun(repo, NullObserver())
    live.start(RUN, ["a"], jobs=1, target=None, base="0" * 40)
    live.step_started("a", 0, "tool", attempt=1)
    time.sleep(0.05)
    live.step_finished("a", 0, "tool", attempt=1, ok=False, detail="exit 1 in 0.1 s")
    live.step_started("a", 0, "tool", attempt=1)
    live.step_finished("a", 0, "tool", attempt=1)
    live.step_started("a", -1, "verify", attempt=1)
    data = json.loads(live.ledger_evidence()["timings.json"])
    steps = data["steps"]
    assert [(s["step"], s["ok"]) for s in steps] == [("tool", False), ("tool", True),
                                                     ("verify", None)]
    # Times are kept to the millisecond: a 50 ms step may read as 49.999 ms.
    assert steps[0]["end"] - steps[0]["start"] >= 0.049 and steps[2]["end"] is None
    assert data["sessions"][0]["pid"] == os.getpid()
    assert measured_weights(steps) == {"a": steps[0]["end"] - steps[0]["start"]
                                       + steps[1]["end"] - steps[1]["start"]}
    live.finish({"run": RUN}, [])


def test_eta_from_the_plans_weights():
    plan = {"order": ["a", "b", "c"], "selected": ["a", "b", "c"], "nodes": [
        {"id": "a", "estimate": 10, "weight": 10, "depends_on": []},
        {"id": "b", "estimate": 20, "weight": 20, "depends_on": ["a"]},
        {"id": "c", "estimate": 4, "weight": 4, "depends_on": []}]}
    # a has run 4 s of its 10: 6 + 20 along the chain; work (6 + 20 + 4) / 2 is less.
    assert eta_seconds(plan, {}, {"a": 4.0}, 2) == 26.0
    assert eta_seconds(plan, {"a": "committed"}, {}, 1) == 24.0  # b then c on one worker
    assert eta_seconds(plan, {"a": "committed", "b": "queued", "c": "committed"}, {}, 2) == 0.0
    unknown = {"order": ["a"], "nodes": [{"id": "a", "estimate": None, "weight": 1.0,
                                          "depends_on": []}]}
    assert eta_seconds(unknown, {}, {}, 1) is None


def test_json_steps_and_every_time_iso():
    out = io.StringIO()
    r = Reporter("json", out, facts=lambda run: {"bound_seconds": 2.0})
    r.start(RUN, ["a"], jobs=1, target=None, base="0" * 40)
    r.step_started("a", 0, "tool", attempt=1)
    r.step_finished("a", 0, "tool", attempt=1, ok=True, detail="exit 0 in 0.0 s")
    r.step_started("a", -1, "verify", attempt=1)
    r.step_finished("a", -1, "verify", attempt=1, ok=False)
    r.transition("a", None, "created")
    r.message("note")
    r.finish({"run": RUN, "exit_code": 0, "counts": {}}, [])
    objs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["event"] for o in objs] == ["start", "tool-started", "tool-finished",
                                          "verify-started", "verify-finished", "transition",
                                          "message", "summary"]
    assert all(ISO_MS.match(o["time"]) for o in objs), objs
    assert objs[2]["worker"] == 0 and objs[2]["ok"] is True and objs[2]["seconds"] >= 0
    assert objs[4]["worker"] == -1 and objs[4]["ok"] is False
    assert objs[-1]["bound_seconds"] == 2.0 and objs[-1]["wall_seconds"] >= 0


def test_quiet_prints_only_the_summary():
    for mode in ("lines", "live", "json"):
        out = io.StringIO()
        r = Reporter(mode, out, quiet=True)
        r.start(RUN, ["a"], jobs=1, target=None, base="0" * 40)
        r.worker(0, "a", "tool")
        r.step_started("a", 0, "tool")
        r.transition("a", None, "created")
        r.message("hello")
        r.finish({"run": RUN, "counts": {"created": 1}}, [["a", "created", "1", "", "1s"]])
        text = out.getvalue()
        assert "hello" not in text and "none -> created" not in text and "\x1b[" not in text
        if mode == "json":
            assert [json.loads(x)["event"] for x in text.splitlines()] == ["summary"]
        else:
            assert "1 workstream: 1 created" in text and "wall time" in text


def test_dag_for_graphviz_and_mermaid():
    plan = build_plan([Workstream(id="a", command="true", estimate=5),
                       Workstream(id="b.x", command="true", depends_on=["a"], estimate=5),
                       Workstream(id="c", command="true", estimate=1)])
    dot = dag_dot(plan, [("c", "b.x")])
    assert dot.startswith("digraph uet {") and dot.endswith("}")
    assert '"a" -> "b.x" [color="#cf222e", penwidth=2];' in dot  # the critical path
    assert '"c" -> "b.x" [style=dashed' in dot
    mer = dag_mermaid(plan)
    assert mer.splitlines()[0] == "flowchart LR"
    assert 'n1["b.x"]' in mer and "n0 --> n1" in mer and "class n0,n1 critical" in mer
