"""The run loop without the CLI: an Engine over real repositories with shell tools, and
``commands.run.execute_run`` reporting to an observer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import git, make_repo
from uet_git.commands.run import execute_run
from uet_git.engine.context import RunContext
from uet_git.engine.events import NullObserver, Observer
from uet_git.engine.inputs import plan_record
from uet_git.engine.loop import Engine, engine_for, make_pool
from uet_git.engine.options import RunOptions
from uet_git.gitrepo.objects import read_blob
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Config, Workstream


class Recorder(NullObserver):
    """Keeps what the engine tells (an Observer, not a stand-in for anything uet calls)."""

    def __init__(self) -> None:
        self.transitions: list[tuple[str, str | None, str, str | None]] = []
        self.messages: list[str] = []
        self.summary: Mapping[str, Any] = {}
        self.rows: Sequence[Sequence[str]] = []

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        self.transitions.append((ws, frm, to, reason))

    def message(self, text: str, **fields: Any) -> None:
        self.messages.append(text)

    def finish(self, summary: Mapping[str, Any], rows: Sequence[Sequence[str]]) -> None:
        self.summary, self.rows = summary, rows


def shell(ws_id: str, command: str, deps: Sequence[str] = (), **kw: Any) -> Workstream:
    return Workstream(id=ws_id, tool="shell", command=command, depends_on=list(deps), **kw)


@contextmanager
def engine_over(tmp_path: Path, workstreams: list[Workstream], *, jobs: int = 2,
                config: Config | None = None,
                observer: Observer | None = None) -> Iterator[tuple[Engine, Ledger]]:
    path = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    repo = Repo.open(path)
    config = config or Config()
    plan = build_plan(workstreams)
    base = git(path, "rev-parse", "HEAD")
    record = plan_record(plan, jobs, {}, [], set(plan.ids), {})
    with Ledger.create(repo, base=base, target="main", plan=record) as ledger:
        pool = make_pool(repo, config, jobs)
        ctx = RunContext(repo=repo, ledger=ledger, config=config, plan=plan, pool=pool,
                         observer=observer or NullObserver(), log_root=tmp_path / "logs",
                         target="main")
        try:
            yield engine_for(ctx, set(plan.ids), jobs, deterministic=False, weights={},
                             records={}, retry=set()), ledger
        finally:
            pool.close(remove=True)


def test_a_dependent_starts_from_the_tip_holding_its_dependency(tmp_path: Path) -> None:
    wss = [shell("a", "echo from-a > a.txt"),
           shell("b", "cat a.txt > b.txt", deps=["a"]),
           shell("c", "echo c > c.txt")]
    with engine_over(tmp_path, wss) as (engine, ledger):
        engine.run()
        states = {ws: r.state for ws, r in ledger.states().items()}
        tip = ledger.integration_tip()
        repo = engine.ctx.repo
        assert states == {"a": "committed", "b": "committed", "c": "committed"}
        assert read_blob(repo, tip, "b.txt") == b"from-a\n"
        assert read_blob(repo, tip, "c.txt") == b"c\n"
        assert not engine.interrupted and not engine.internal_errors
        assert set(engine.spent) == {"a", "b", "c"}


def test_a_failed_tool_quarantines_and_blocks_its_dependents(tmp_path: Path) -> None:
    seen = Recorder()
    wss = [shell("bad", "exit 3"), shell("after", "echo x > x.txt", deps=["bad"]),
           shell("fine", "echo y > y.txt")]
    with engine_over(tmp_path, wss, observer=seen) as (engine, ledger):
        engine.run()
        recs = ledger.states()
        assert (recs["bad"].state, recs["bad"].reason) == ("quarantined", "tool-failed")
        assert recs["after"].state == "blocked"
        assert recs["fine"].state == "committed"
    assert ("after", None, "blocked", "dependency-quarantined") in seen.transitions
    assert ("fine", "verified", "committed", None) in seen.transitions


def test_execute_run_lands_and_reports_through_the_observer(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {
        "workstreams/a.yaml": "id: a\ntool: shell\ncommand: echo a > a.txt\n",
        "workstreams/b.yaml": "id: b\ntool: shell\ncommand: cp a.txt b.txt\n"
                              "depends_on: [a]\n",
    })
    seen = Recorder()
    result = execute_run(Repo.open(path), RunOptions(jobs=2), seen)
    assert result.exit_code == 0 and result.landed, result.message
    assert result.counts == {"committed": 2}
    assert (path / "b.txt").read_text() == "a\n"  # the checkout of main was updated
    assert seen.summary["exit_code"] == 0
    assert [r[:2] for r in seen.rows] == [["a", "committed"], ["b", "committed"]]


def test_a_dry_run_returns_what_it_would_do_and_writes_nothing(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {
        "workstreams/a.yaml": "id: a\ntool: shell\ncommand: echo a > a.txt\n",
        "workstreams/b.yaml": "id: b\ntool: shell\ncommand: \"true\"\ndepends_on: [a]\n",
    })
    result = execute_run(Repo.open(path), RunOptions(dry_run=True, jobs=3), NullObserver())
    assert result.run_id is None and result.dry_run is not None
    assert result.dry_run.order == ["a", "b"]
    assert result.dry_run.lines[0].startswith("dry run: 2 workstreams, 3 workers, target main")
    assert result.dry_run.record["event"] == "dry-run"
    assert git(path, "for-each-ref", "refs/uet/") == ""


def test_a_checkout_that_will_refuse_the_landing_is_said_at_run_start(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {
        "workstreams/a.yaml": "id: a\ntool: shell\ncommand: echo a > a.txt\n"})
    (path / ".git" / "MERGE_HEAD").write_text(git(path, "rev-parse", "HEAD") + "\n")
    seen = Recorder()
    result = execute_run(Repo.open(path), RunOptions(jobs=1), seen)
    warned = [m for m in seen.messages if m.startswith("warning: landing on main")]
    assert len(warned) == 1 and "merge" in warned[0], seen.messages
    assert not result.landed
    seen = Recorder()
    execute_run(Repo.open(path), RunOptions(jobs=1, land="never"), seen)
    assert not [m for m in seen.messages if m.startswith("warning: landing")]


def test_cancel_stops_the_running_tool_and_records_nothing_for_it(tmp_path: Path) -> None:
    wss = [shell("done", "echo d > d.txt"), shell("long", "sleep 30; echo l > l.txt"),
           shell("later", "echo x > x.txt", deps=["long"])]
    with engine_over(tmp_path, wss, jobs=2) as (engine, ledger):
        started = time.monotonic()
        threading.Timer(1.5, engine.ctx.cancel.set).start()
        engine.run()
        assert time.monotonic() - started < 20
        assert engine.interrupted
        states = {ws: r.state for ws, r in ledger.states().items()}
        assert states == {"done": "committed"}  # long: nothing recorded, resume redoes it
        assert engine.scheduler.state["long"] == "ready"
