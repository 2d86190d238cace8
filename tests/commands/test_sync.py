"""commands/sync.plan_run: the per-run rules, on real commits (a chain standing in for a
ledger, another for the integration ref)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.commands.sync import plan_run, select_runs
from uet_git.errors import UetError
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.layout import integration_ref, ledger_ref, patch_ref, state_ref

RUN = "20261201-100000-0001"


def _commit(repo: Path, subject: str, parent: str | None, body: str = "") -> str:
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    args = ["commit-tree", tree, "-m", subject, *(["-m", body] if body else []),
            *(["-p", parent] if parent else [])]
    return git(repo, *args)


@pytest.fixture
def r(tmp_path: Path) -> tuple[Repo, Path]:
    path = make_repo(tmp_path / "r")
    return Repo.open(path), path


def test_states_are_replaced_and_pruned_ledger_fast_forwards(r):
    repo, path = r
    l1 = _commit(path, "a: none -> quarantined", None)
    l2 = _commit(path, "a: quarantined -> committed", l1)
    src = {ledger_ref(RUN): l2, state_ref("committed", RUN, "a"): l2}
    dst = {ledger_ref(RUN): l1, state_ref("quarantined", RUN, "a"): l1}
    plan = plan_run(repo, RUN, src, dst, "src", "dst")
    assert sorted(plan.updates) == sorted([
        (ledger_ref(RUN), l2, l1),
        (state_ref("committed", RUN, "a"), l2, None),
        (state_ref("quarantined", RUN, "a"), None, l1),
    ])
    # The destination ahead: left alone, nothing changes there.
    back = plan_run(repo, RUN, dst, src, "dst", "src")
    assert back.updates == [] and back.note and "ahead" in back.note


def test_diverged_ledger_and_moved_patch_are_refused(r):
    repo, path = r
    base = _commit(path, "start", None)
    ours, theirs = _commit(path, "x", base), _commit(path, "y", base)
    with pytest.raises(UetError, match=f"run {RUN}: the ledger .* diverged"):
        plan_run(repo, RUN, {ledger_ref(RUN): ours}, {ledger_ref(RUN): theirs}, "a", "b")
    with pytest.raises(UetError, match="patch refs never move"):
        plan_run(repo, RUN, {ledger_ref(RUN): base, patch_ref(RUN, "a", 1): ours},
                 {ledger_ref(RUN): base, patch_ref(RUN, "a", 1): theirs}, "a", "b")


def test_integration_moves_off_its_line_only_by_a_recorded_rebase(r):
    repo, path = r
    base = _commit(path, "start", None)
    i_old, i_new = _commit(path, "i1", base), _commit(path, "i2", base)
    plain = _commit(path, "a: verified -> committed", base)
    bare_word = _commit(path, "run: rebase", base)  # no Uet-Onto: not the writer's record
    rebase = _commit(path, "run: rebase", base, f"Uet-Run: {RUN}\nUet-Onto: {base}")
    dst = {ledger_ref(RUN): base, integration_ref(RUN): i_old}
    with pytest.raises(UetError, match="no rebase is recorded"):
        plan_run(repo, RUN, {ledger_ref(RUN): plain, integration_ref(RUN): i_new}, dst, "a", "b")
    with pytest.raises(UetError, match="no rebase is recorded"):
        plan_run(repo, RUN, {ledger_ref(RUN): bare_word, integration_ref(RUN): i_new}, dst,
                 "a", "b")
    plan = plan_run(repo, RUN, {ledger_ref(RUN): rebase, integration_ref(RUN): i_new}, dst,
                    "a", "b")
    assert (integration_ref(RUN), i_new, i_old) in plan.updates


def test_select_runs_prefixes():
    runs = ["20261201-100000-0001", "20261201-100000-0002", "20261202-090000-0003"]
    assert select_runs(runs, [], "x") == runs
    assert select_runs(runs, ["20261202"], "x") == ["20261202-090000-0003"]
    with pytest.raises(UetError, match="ambiguous"):
        select_runs(runs, ["20261201"], "x")
    with pytest.raises(UetError, match="not found in x"):
        select_runs(runs, ["2027"], "x")
