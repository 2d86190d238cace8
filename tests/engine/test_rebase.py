"""Re-integration onto a moved target without the CLI: every committed candidate made again
onto the new tip and judged again; a change the new tip already holds is skipped (and said);
a conflict or a failing check raises and moves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import fsck_clean, landed_workstreams, last_run, run_ok, setup_repo
from tests.engine.verifykit import Kit, kit
from uet_git.engine.integrator import integrate
from uet_git.engine.options import RunOptions
from uet_git.engine.rebase import committed_in_order, reintegrate
from uet_git.errors import UetError
from uet_git.gitrepo import odb
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.layout import ALREADY_APPLIED


def target_moves(k: Kit, files: dict[str, str]) -> str:
    """Someone else commits ``files`` on main; returns its new tip."""
    for name, text in files.items():
        (k.path / name).write_text(text)
    git(k.path, "add", "-A")
    git(k.path, "commit", "-q", "-m", "someone else")
    return git(k.path, "rev-parse", "main")


def committed(k: Kit, *specs: tuple[str, dict[str, str]]) -> str:
    for ws, files in specs:
        k.queue(ws, files)
    for ws, _ in specs:
        assert integrate(k.ctx, ws).state == "committed"
    return k.ledger.integration_tip()


def rebase_events(k: Kit) -> list[odb.CommitInfo]:
    return [c for c in odb.walk_commits(k.repo, k.ledger.tip) if c.subject == "run: rebase"]


def test_reintegrate_onto_a_moved_target(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        old = committed(k, ("a", {"a.txt": "a\n"}), ("b", {"b.txt": "b\n"}))
        onto = target_moves(k, {"other.txt": "other\n"})
        res = reintegrate(k.repo, k.ledger, onto, RunOptions(), k.observer)
        assert (res.integrated, res.skipped) == (["a", "b"], [])
        assert res.tip == k.ledger.integration_tip() != old
        chain = [c.oid for c in odb.walk_commits(k.repo, res.tip, first_parent=True)]
        assert chain[2] == onto
        assert [parse_trailers(odb.get_commit(k.repo, c).message)["Uet-Workstream"]
                for c in chain[:2]] == ["b", "a"]
        [event] = rebase_events(k)
        assert parse_trailers(event.message)["Uet-Onto"] == onto


def test_a_change_already_in_the_new_tip_is_skipped(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        committed(k, ("a", {"a.txt": "a\n"}), ("b", {"b.txt": "b\n"}))
        onto = target_moves(k, {"a.txt": "a\n"})  # a's change landed by another run
        assert committed_in_order(k.repo, k.ledger) == ["a", "b"]
        res = reintegrate(k.repo, k.ledger, onto, RunOptions(), k.observer)
        assert (res.integrated, res.skipped) == (["b"], ["a"])
        assert odb.get_commit(k.repo, res.tip).parent == onto  # no empty duplicate of a
        assert any("a: its change is already in" in m for m in k.observer.messages)
        [event] = rebase_events(k)
        assert parse_trailers(event.message)[ALREADY_APPLIED] == "a"


def test_a_conflict_moves_nothing(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        old = committed(k, ("a", {"a.txt": "a\n"}), ("b", {"b.txt": "b\n"}))
        onto = target_moves(k, {"b.txt": "someone else's b\n"})
        with pytest.raises(UetError, match=r"b conflicts in b\.txt; nothing landed") as err:
            reintegrate(k.repo, k.ledger, onto, RunOptions(), k.observer)
        assert err.value.exit_code == 1
        assert k.ledger.integration_tip() == old
        assert git(k.path, "rev-parse", f"refs/uet/integration/{k.ledger.run}") == old
        assert rebase_events(k) == []


def test_acceptance_failing_on_the_new_tip_moves_nothing(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {"acceptance": ["test ! -f other.txt"]}}) as k:
        old = committed(k, ("a", {"a.txt": "a\n"}))
        onto = target_moves(k, {"other.txt": "other\n"})
        with pytest.raises(UetError, match="a: acceptance failed on the candidate"):
            reintegrate(k.repo, k.ledger, onto, RunOptions(), k.observer)
        assert k.ledger.integration_tip() == old
        assert rebase_events(k) == []


def test_two_runs_of_the_same_work_land_it_once(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        ws: {"command": f"echo {ws} > {ws}.txt"} for ws in ("a", "b", "c")})
    run_ok(repo, "run", "--land", "never")
    first = last_run(repo)
    run_ok(repo, "run", "--land", "never")
    second = last_run(repo)
    assert first != second
    run_ok(repo, "land", first)
    landed = git(repo, "rev-parse", "main")
    proc = run_ok(repo, "land", second, "--rebase")
    for ws in ("a", "b", "c"):
        assert f"{ws}: its change is already in" in proc.stdout
    assert git(repo, "rev-parse", "main") == landed  # nothing new: no empty duplicates
    assert sorted(landed_workstreams(repo)) == ["a", "b", "c"]  # each once
    # git's fsck only: `uet fsck` has yet to read the rebase's Uet-Already-Applied (the ledger's).
    fsck_clean(repo, uet_fsck=False)
