"""Seeding a run from its ledger: each recorded state -> its action, on resume and on retry,
from states recorded in a real ledger."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.engine.verifykit import plan_json, workstreams
from uet_git.engine.seed import (
    ON_RESUME,
    ON_RETRY,
    Action,
    action_for,
    recorded_config,
    retry_sets,
    seed,
)
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.states import State
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Config

# ws -> (its dependencies, the moves recorded for it)
RECORDED: dict[str, tuple[list[str], list[str]]] = {
    "created": ([], ["created"]),
    "validated": ([], ["created", "validated"]),
    "queued": ([], ["created", "validated", "queued"]),
    "applied": ([], ["created", "validated", "queued", "applied"]),
    "verified": ([], ["created", "validated", "queued", "applied", "verified"]),
    "committed": ([], ["created", "validated", "queued", "applied", "verified", "committed"]),
    "quarantined": ([], ["quarantined"]),
    "dropped": ([], ["quarantined", "dropped"]),
    "blocked-dead": (["quarantined"], ["blocked"]),  # its dependency failed for good
    "blocked-back": (["committed"], ["blocked"]),  # its dependency is committed now
    "never": ([], []),
}


def test_every_state_has_an_action() -> None:
    assert set(ON_RESUME) == set(ON_RETRY) == {None, *State}
    assert action_for("pending", retried=False) is Action.RUN


def record(tmp_path: Path) -> tuple[Ledger, dict[str, str]]:
    path = make_repo(tmp_path / "r", {"README.md": "x\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    wss = workstreams({ws: {"depends_on": deps} for ws, (deps, _) in RECORDED.items()})
    ledger = Ledger.create(repo, base=base, target="main", plan=plan_json(wss))
    patches: dict[str, str] = {}
    for ws, (_, moves) in RECORDED.items():
        tip = ledger.integration_tip()
        patch = make_commit(repo, build_tree(repo, tip, {f"{ws}.txt": b"x\n"}), [tip], ws)
        for to in moves:
            kw: dict[str, object] = {}
            if to == "created":
                kw["patch"] = patches[ws] = patch
            elif to == "applied":
                kw["candidate"] = patch
            elif to == "committed":
                kw["integration"] = patch
            elif to == "quarantined":
                kw["reason"] = "tool-failed"
            ledger.record(ws, to, attempt=1, **kw)
    return ledger, patches


def test_resume_table(tmp_path: Path) -> None:
    ledger, patches = record(tmp_path)
    with ledger:
        plan = build_plan(workstreams({ws: {"depends_on": d} for ws, (d, _) in
                                       RECORDED.items()}))
        s = seed(plan, set(plan.ids), ledger.states())
    assert s.actions == {
        "created": Action.RECHECK, "validated": Action.RECHECK,
        "queued": Action.INTEGRATE, "applied": Action.INTEGRATE, "verified": Action.INTEGRATE,
        "committed": Action.DONE, "quarantined": Action.KEEP, "dropped": Action.KEEP,
        "blocked-dead": Action.KEEP, "blocked-back": Action.RUN,
    }
    assert s.committed == ["committed"] and s.tip_after == {"committed": patches["committed"]}
    assert sorted(s.queued) == ["applied", "queued", "verified"]
    assert s.rechecks == {"created": (patches["created"], "created"),
                          "validated": (patches["validated"], "validated")}
    assert sorted(s.failed) == ["blocked-dead", "dropped", "quarantined"]
    assert sorted(s.block_dependents_of) == ["dropped", "quarantined"]  # not the blocked one
    assert s.attempts["blocked-back"] == 1 and "never" not in s.attempts


def test_retry_table(tmp_path: Path) -> None:
    ledger, _ = record(tmp_path)
    with ledger:
        records = ledger.states()
        plan = build_plan(workstreams({ws: {"depends_on": d} for ws, (d, _) in
                                       RECORDED.items()}))
        only = {"quarantined", "blocked-dead", "queued"}
        retry, reverify = retry_sets(only, records)
        s = seed(plan, only, records, retry)
    assert (retry, reverify) == ({"quarantined", "blocked-dead"}, {"queued"})
    assert s.actions["quarantined"] is Action.NEW_ATTEMPT and s.attempts["quarantined"] == 2
    assert s.actions["blocked-dead"] is Action.RUN and s.attempts["blocked-dead"] == 1
    # Outside ``only``: only what is committed counts (for the retried ones' dependencies).
    assert set(s.actions) == {"quarantined", "blocked-dead", "queued", "committed"}


@pytest.mark.parametrize("stored", [True, False])
def test_recorded_config_is_the_runs_not_the_checkouts(tmp_path: Path, stored: bool) -> None:
    path = make_repo(tmp_path / "r", {"uet.toml": '[hooks]\npre-merge = ["./check"]\n'})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    (path / "uet.toml").write_text("[hooks]\npre-merge = []\n")  # edited after the run started
    config = Config.model_validate({"hooks": {"pre-merge": ["./stored"]}}) if stored else None
    with Ledger.create(repo, base=base, target="main", plan=plan_json([]),
                       config=config.model_dump(mode="json", by_alias=True) if config else None
                       ) as ledger:
        got = recorded_config(repo, ledger)
    assert got.hooks.pre_merge == (["./stored"] if stored else ["./check"])
