"""A running run keeps its ledger's fold (engine/live.py ``fold_every``), so a `uet status`
during the run, or after a kill -9, folds only the commits since."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_repo
from uet_git.engine.events import NullObserver
from uet_git.engine.live import LiveRun
from uet_git.gitrepo import Repo
from uet_git.ledger import fold
from uet_git.ledger.writer import Ledger

PLAN = {"nodes": [{"id": "a", "depends_on": []}, {"id": "b", "depends_on": []}]}


def test_a_running_run_keeps_its_fold_when_it_is_due(tmp_path: Path) -> None:
    repo = Repo.open(make_repo(tmp_path / "r"))
    base = repo.rev_parse("HEAD")
    assert base
    with Ledger.create(repo, base=base, target="main", plan=PLAN) as led:
        live = LiveRun(repo, NullObserver(), fold_every=3600.0)
        live.start(led.run, ["a", "b"], jobs=1, target="main", base=base)
        led.record("a", "quarantined", attempt=1, reason="tool-failed")
        live.transition("a", None, "quarantined", attempt=1, reason="tool-failed")
        assert fold.load(repo, led.run) is None  # not due yet
        live.fold_every = 0.0
        led.record("b", "quarantined", attempt=1, reason="tool-failed")
        live.transition("b", None, "quarantined", attempt=1, reason="tool-failed")
        kept = fold.load(repo, led.run)
        assert kept is not None and kept.tip == led.tip and not kept.finished
        assert {ws: r.reason for ws, r in kept.records.items()} == \
            {"a": "tool-failed", "b": "tool-failed"}
        live.close()
