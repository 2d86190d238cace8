"""Landing on real repositories: ledger states are scripted with the real Ledger writer and real
patch/candidate commits; results are checked with the git CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.landkit import (
    fsck_clean,
    head_of,
    open_land,
    scripted_run,
    snapshot_files,
    two_committed,
)
from tests.conftest import git
from uet_git.commands.journal import open_intent
from uet_git.commands.land import land_events
from uet_git.gitrepo import branch
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo


def test_land_fast_forwards_target_not_checked_out(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "checkout", "-q", "--detach")
    before = snapshot_files(b.path)
    res = open_land(b)
    assert res.landed, res.message
    assert res.target_oid == b.tip
    assert head_of(b.path) == b.tip
    assert git(b.path, "rev-list", "--count", f"{b.base}..main") == "2"
    # The detached main checkout was not touched.
    assert snapshot_files(b.path) == before
    assert git(b.path, "rev-parse", "HEAD") == b.base
    # The landing is in the ledger with its trailers.
    subject = git(b.path, "log", "-1", "--format=%s", f"refs/uet/ledger/{b.run}")
    assert subject == "run: land"
    trailers = git(b.path, "log", "-1", "--format=%B", f"refs/uet/ledger/{b.run}")
    parsed = git(b.path, "interpret-trailers", "--parse", input=trailers + "\n")
    assert f"Uet-Landed: {b.tip}" in parsed
    assert f"Uet-Previous: {b.base}" in parsed
    assert "Uet-Branch: main" in parsed
    events = land_events(b.repo, b.run)
    assert [(e.previous, e.landed) for e in events] == [(b.base, b.tip)]
    fsck_clean(b.path)


def test_land_updates_clean_checkout(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "untracked-note.txt").write_text("mine\n")  # not in the new tree: allowed
    res = open_land(b)
    assert res.landed, res.message
    assert str(b.path) in res.message
    assert head_of(b.path) == b.tip
    assert git(b.path, "rev-parse", "HEAD") == b.tip
    assert (b.path / "a.txt").read_text() == "alpha changed by ws-a\n"
    assert (b.path / "new/file.txt").read_text() == "added by ws-b\n"
    assert not (b.path / "b.txt").exists()
    assert (b.path / "untracked-note.txt").read_text() == "mine\n"
    assert git(b.path, "status", "--porcelain", "--untracked-files=no") == ""
    assert git(b.path, "status", "--porcelain") == "?? untracked-note.txt"
    fsck_clean(b.path)


def test_land_updates_linked_worktree(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "checkout", "-q", "--detach")
    wt = tmp_path / "linked"
    git(b.path, "worktree", "add", "-q", str(wt), "main")
    res = open_land(b)
    assert res.landed, res.message
    assert (wt / "a.txt").read_text() == "alpha changed by ws-a\n"
    assert git(wt, "status", "--porcelain") == ""
    assert git(wt, "rev-parse", "HEAD") == b.tip
    # The main worktree (detached at the base) is untouched.
    assert (b.path / "a.txt").read_text() == "alpha\n"
    fsck_clean(b.path)


@pytest.mark.parametrize("how", ["unstaged", "staged"])
def test_land_refuses_local_change_to_a_landed_path(tmp_path: Path, how: str) -> None:
    b = two_committed(tmp_path)
    name = "a.txt"
    (b.path / name).write_bytes(b"my own work \xff\n")
    if how == "staged":
        git(b.path, "add", name)
    index_before = git(b.path, "ls-files", "-s", "--debug")
    files_before = snapshot_files(b.path)
    status_before = git(b.path, "status", "--porcelain")
    res = open_land(b)
    assert not res.landed
    assert "local changes" in res.message and name in res.message
    assert f"uet land {b.run}" in res.message
    assert "\n" not in res.message
    assert head_of(b.path) == b.base
    assert snapshot_files(b.path) == files_before
    assert git(b.path, "ls-files", "-s", "--debug") == index_before
    assert git(b.path, "status", "--porcelain") == status_before
    assert git(b.path, "rev-parse", f"refs/uet/integration/{b.run}") == b.tip
    assert land_events(b.repo, b.run) == []
    fsck_clean(b.path)


def test_land_refuses_untracked_file_in_the_way(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "new").mkdir()
    (b.path / "new/file.txt").write_text("an untracked file of mine\n")
    files_before = snapshot_files(b.path)
    res = open_land(b)
    assert not res.landed
    assert "new/file.txt" in res.message and f"uet land {b.run}" in res.message
    assert snapshot_files(b.path) == files_before
    assert head_of(b.path) == b.base
    assert git(b.path, "status", "--porcelain") == "?? new/"
    fsck_clean(b.path)


def test_land_refuses_when_target_moved(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "b.txt").write_text("someone else's commit\n")
    git(b.path, "commit", "-q", "-am", "moved on")
    moved = head_of(b.path)
    res = open_land(b)
    assert not res.landed
    assert f"uet land {b.run} --rebase" in res.message
    assert "moved" in res.message
    assert head_of(b.path) == moved
    assert (b.path / "b.txt").read_text() == "someone else's commit\n"
    assert git(b.path, "rev-parse", f"refs/uet/integration/{b.run}") == b.tip
    fsck_clean(b.path)


def test_land_cas_race_not_checked_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = two_committed(tmp_path)
    git(b.path, "checkout", "-q", "--detach")
    other = make_commit(b.repo, build_tree(b.repo, b.base, {"x.txt": b"x\n"}), [b.base], "other")
    real = branch.checkouts_of

    def racing(repo: Repo, ref: str) -> list[Path]:
        # Another process moves the target after land() checked it, before the CAS.
        git(b.path, "update-ref", "refs/heads/main", other)
        return real(repo, ref)

    monkeypatch.setattr(branch, "checkouts_of", racing)
    res = open_land(b)
    assert not res.landed
    assert f"uet land {b.run}" in res.message
    assert head_of(b.path) == other  # not clobbered
    assert land_events(b.repo, b.run) == []
    # The intent is answered: nothing is left for a later command to recover.
    assert open_intent(b.repo, b.run) is None
    fsck_clean(b.path)


def test_land_cas_race_checked_out_restores_files(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    b = two_committed(tmp_path)
    other = make_commit(b.repo, build_tree(b.repo, b.base, {"x.txt": b"x\n"}), [b.base], "other")
    real = branch.crash_point

    def racing(name: str) -> None:
        if name == "before-ref":
            # The branch moves under the checkout (like `git branch -f` elsewhere) after the
            # files were written, before the compare-and-swap.
            git(b.path, "update-ref", "refs/heads/main", other, b.base)
        real(name)

    monkeypatch.setattr(branch, "crash_point", racing)
    res = open_land(b)
    assert not res.landed
    assert head_of(b.path) == other
    # The checkout's files and index are back to what they were (the base's tree).
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "b.txt").read_text() == "beta\n"
    assert not (b.path / "new").exists()
    assert git(b.path, "diff", "--cached", "--name-only", b.base) == ""
    assert git(b.path, "diff", "--name-only") == ""
    assert not (b.path / ".git/index.lock").exists()
    assert open_intent(b.repo, b.run) is None
    fsck_clean(b.path)


def test_land_twice_is_idempotent(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    assert open_land(b).landed
    res = open_land(b)
    assert res.landed and "already" in res.message
    assert len(land_events(b.repo, b.run)) == 1


def test_land_records_a_landing_found_after_the_fact(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "checkout", "-q", "--detach")
    git(b.path, "update-ref", "refs/heads/main", b.tip)  # as if a crash hit before the event
    res = open_land(b)
    assert res.landed
    assert [(e.previous, e.landed) for e in land_events(b.repo, b.run)] == [(b.base, b.tip)]


def test_land_nothing_committed(tmp_path: Path) -> None:
    b = scripted_run(tmp_path / "repo", [("ws-a", "quarantined:verify-failed",
                                           {"a.txt": b"x\n"})])
    res = open_land(b)
    assert res.landed and "nothing to land" in res.message
    assert head_of(b.path) == b.base
    assert land_events(b.repo, b.run) == []


def test_land_target_moved_but_contains_tip(tmp_path: Path) -> None:
    b = scripted_run(tmp_path / "repo", [("ws-a", "quarantined:conflict", {"a.txt": b"x\n"})])
    git(b.path, "commit", "-q", "--allow-empty", "-m", "later")
    res = open_land(b)
    assert res.landed and "nothing to land" in res.message


def test_land_missing_target_branch(tmp_path: Path) -> None:
    b = two_committed(tmp_path, target="release")
    res = open_land(b)
    assert not res.landed
    assert "release does not exist" in res.message

