"""`uet rollback` on scripted, landed runs: by reset, by reverts, refusals; checked with git."""

from __future__ import annotations

from pathlib import Path

from tests.commands.landkit import (
    Built,
    fsck_clean,
    head_of,
    open_land,
    scripted_run,
    snapshot_files,
    two_committed,
)
from tests.conftest import git
from tests.engine.test_actions import state_refs
from uet_git.commands.land import land, land_events
from uet_git.commands.rollback import rollback_run
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.ledger.writer import Ledger


def landed(tmp_path: Path, checked_out: bool = True) -> Built:
    b = two_committed(tmp_path)
    if not checked_out:
        git(b.path, "checkout", "-q", "--detach")
    res = open_land(b)
    assert res.landed, res.message
    return b


def rolled_back_refs(b: Built) -> list[str]:
    out = git(b.path, "for-each-ref", "--format=%(refname)", f"refs/uet/rolled-back/{b.run}/")
    return out.splitlines()


def test_rollback_by_reset_updates_clean_checkout(tmp_path: Path) -> None:
    b = landed(tmp_path)
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back, res.message
    assert res.method == "reset" and res.reverts == []
    assert head_of(b.path) == b.base
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "b.txt").read_text() == "beta\n"
    assert not (b.path / "new").exists()
    assert git(b.path, "status", "--porcelain") == ""
    assert rolled_back_refs(b) == [f"refs/uet/rolled-back/{b.run}/ws-a",
                                   f"refs/uet/rolled-back/{b.run}/ws-b"]
    assert git(b.path, "for-each-ref", f"refs/uet/committed/{b.run}/") == ""
    # Nothing deleted: patches, the integration ref and the whole history are still there.
    assert git(b.path, "rev-parse", f"refs/uet/integration/{b.run}") == b.tip
    for ws, patch in b.patches.items():
        assert git(b.path, "rev-parse", f"refs/uet/patches/{b.run}/{ws}/1") == patch
    subjects = git(b.path, "log", "--format=%s", f"refs/uet/ledger/{b.run}").splitlines()
    assert subjects[:6] == ["ws-b: committed -> rolled-back", "ws-a: committed -> rolled-back",
                            "run: rollback", "run: rollback-intent", "run: land",
                            "run: land-intent"]
    assert "ws-a: verified -> committed" in subjects
    fsck_clean(b.path)


def test_rollback_by_reset_not_checked_out(tmp_path: Path) -> None:
    b = landed(tmp_path, checked_out=False)
    before = snapshot_files(b.path)
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back and res.method == "reset"
    assert head_of(b.path) == b.base
    assert snapshot_files(b.path) == before
    fsck_clean(b.path)


def test_rollback_by_reverts_when_target_moved_on(tmp_path: Path) -> None:
    b = landed(tmp_path)
    (b.path / "src/c.txt").write_text("gamma, a later commit of the user\n")
    git(b.path, "commit", "-q", "-am", "user commit after the landing")
    user = head_of(b.path)
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back, res.message
    assert res.method == "revert" and len(res.reverts) == 2
    main = head_of(b.path)
    assert main == res.reverts[-1]
    # Reverts sit on top of the user's commit, newest landed commit reverted first.
    assert git(b.path, "rev-list", "--count", f"{user}..main") == "2"
    assert git(b.path, "rev-parse", "main~2") == user
    bodies = git(b.path, "log", "--format=%(trailers:key=Uet-Reverts,valueonly)", "-2", "main")
    assert bodies.split() == [b.candidates["ws-a"], b.candidates["ws-b"]]
    assert "Uet-Workstream" not in git(b.path, "log", "--format=%B", "-2", "main")
    # The run's changes are gone, the user's commit stays; the checkout follows, clean.
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "b.txt").read_text() == "beta\n"
    assert not (b.path / "new").exists()
    assert (b.path / "src/c.txt").read_text() == "gamma, a later commit of the user\n"
    assert git(b.path, "status", "--porcelain") == ""
    assert git(b.path, "diff", b.base, "main", "--name-only") == "src/c.txt"
    assert len(rolled_back_refs(b)) == 2
    fsck_clean(b.path)


def test_rollback_revert_conflict_moves_nothing(tmp_path: Path) -> None:
    b = landed(tmp_path)
    (b.path / "a.txt").write_text("the user rewrote ws-a's line\n")
    git(b.path, "commit", "-q", "-am", "user edits the same line")
    user = head_of(b.path)
    res = rollback_run(b.repo, b.run)
    assert not res.rolled_back
    assert "ws-a" in res.message and "a.txt" in res.message and "conflict" in res.message
    assert "\n" not in res.message
    assert head_of(b.path) == user
    assert git(b.path, "status", "--porcelain") == ""
    assert sorted(state_refs(b).values()) == ["committed", "committed"]
    assert rolled_back_refs(b) == []
    fsck_clean(b.path)


def test_rollback_refuses_dirty_checkout(tmp_path: Path) -> None:
    b = landed(tmp_path)
    (b.path / "a.txt").write_bytes(b"work in progress\n")
    res = rollback_run(b.repo, b.run)
    assert not res.rolled_back
    assert "local changes" in res.message and f"uet rollback {b.run}" in res.message
    assert head_of(b.path) == b.tip
    assert (b.path / "a.txt").read_bytes() == b"work in progress\n"
    assert rolled_back_refs(b) == []


def test_rollback_nothing_landed_and_twice(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    res = rollback_run(b.repo, b.run)
    assert not res.rolled_back and "landed nothing" in res.message
    assert res.exit_code == 1
    assert rolled_back_refs(b) == []
    assert open_land(b).landed
    assert rollback_run(b.repo, b.run).rolled_back
    again = rollback_run(b.repo, b.run)
    assert not again.rolled_back and "already rolled back" in again.message
    # A rolled-back run does not land again.
    res2 = open_land(b)
    assert not res2.landed and "rolled back" in res2.message
    assert head_of(b.path) == b.base


def test_rollback_after_crash_before_recording(tmp_path: Path) -> None:
    b = landed(tmp_path, checked_out=False)
    git(b.path, "update-ref", "refs/heads/main", b.base)  # as if the ledger update was lost
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back and "already back" in res.message
    assert len(rolled_back_refs(b)) == 2


def test_rollback_after_another_run_landed_on_top(tmp_path: Path) -> None:
    b = scripted_run(tmp_path / "repo", [("ws-a", "committed", {"a.txt": b"A\n"})])
    assert open_land(b).landed
    later = scripted_run(tmp_path / "repo", [("ws-z", "committed", {"src/c.txt": b"Z\n"})])
    assert later.base == b.tip
    assert open_land(later).landed
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back and res.method == "revert" and len(res.reverts) == 1
    assert git(b.path, "rev-parse", "main~1") == later.tip
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "src/c.txt").read_text() == "Z\n"
    assert state_refs(later) == {"ws-z": "committed"}
    assert state_refs(b) == {"ws-a": "rolled-back"}
    fsck_clean(b.path)


def test_rollback_continuous_landings_resets_to_first(tmp_path: Path) -> None:
    """Landings after each commit (``--land continuous``): one reset undoes them all."""
    b = scripted_run(tmp_path / "repo", [("ws-a", "committed", {"a.txt": b"A\n"})])
    assert open_land(b).landed
    with Ledger.open(b.repo, b.run) as ledger:
        msg = "ws-b: change\n\nUet-Workstream: ws-b\n"
        tree = build_tree(b.repo, b.tip, {"b.txt": b"B\n"})
        patch = make_commit(b.repo, tree, [b.tip], msg)
        cand = make_commit(b.repo, tree, [b.tip], msg)
        for to, kw in [("created", {"patch": patch}), ("validated", {}), ("queued", {}),
                       ("applied", {"candidate": cand}), ("verified", {}),
                       ("committed", {"integration": cand})]:
            ledger.record("ws-b", to, attempt=1, **kw)  # type: ignore[arg-type]
        assert land(b.repo, ledger).landed
    assert [e.previous for e in land_events(b.repo, b.run)] == [b.base, b.tip]
    res = rollback_run(b.repo, b.run)
    assert res.rolled_back and res.method == "reset"
    assert head_of(b.path) == b.base
    assert git(b.path, "status", "--porcelain") == ""
    assert state_refs(b) == {"ws-a": "rolled-back", "ws-b": "rolled-back"}
    fsck_clean(b.path)
