"""What may land and where it may land, without the CLI: the ledger's recorded tip (never a
forged ref), `git merge --ff-only`-like checkouts (unrelated local work kept byte for byte;
ignored files in the way and operations in progress refused), a target a tampering tool moved,
and the one-line warning at run start (``landing_blockers``)."""

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
from tests.conftest import git, make_repo
from uet_git.commands.journal import open_intent
from uet_git.commands.land import land, land_events, landing_blockers, recorded_tip
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger


def forge(b_path: Path, run: str, base: str) -> str:
    """What a hostile tool does: a commit of its own, then the integration ref moved to it."""
    tree = git(b_path, "write-tree")
    forged = git(b_path, "commit-tree", tree, "-p", base, "-m", "forged: unverified")
    git(b_path, "update-ref", f"refs/uet/integration/{run}", forged)
    return forged


def test_forged_integration_ref_is_refused(tmp_path: Path) -> None:
    """The ref is forged while the run's ledger is open (a tool of the run itself): the writer
    already read it, land reads what the ledger recorded. (Opening the ledger afterwards is
    refused by the writer itself: the CLI tests cover that.)"""
    b = two_committed(tmp_path)
    with Ledger.open(b.repo, b.run) as ledger:
        forged = forge(b.path, b.run, b.base)
        tip, problem = recorded_tip(b.repo, ledger)
        assert tip == b.tip == query.recorded_integration_tip(b.repo, b.run)
        res = land(b.repo, ledger)
    assert not res.landed
    assert res.message == problem
    assert f"refs/uet/integration/{b.run} is at {forged[:12]}" in res.message
    assert f"the ledger recorded {b.tip[:12]}" in res.message
    assert f"uet fsck --repair {b.run}" in res.message
    assert "\n" not in res.message
    assert head_of(b.path) == b.base
    assert land_events(b.repo, b.run) == []
    # The forged ref is put back from the ledger (what `uet fsck --repair` does): it lands.
    git(b.path, "update-ref", f"refs/uet/integration/{b.run}", b.tip, forged)
    assert open_land(b).landed
    assert head_of(b.path) == b.tip


@pytest.mark.parametrize("how", ["unstaged", "staged", "both"])
def test_unrelated_local_changes_land_and_stay_byte_for_byte(tmp_path: Path, how: str) -> None:
    b = two_committed(tmp_path)
    mine = b"my own work \x00\r\n"
    (b.path / "src/c.txt").write_bytes(mine)  # a path the landing does not change
    if how in ("staged", "both"):
        git(b.path, "add", "src/c.txt")
    if how == "both":
        (b.path / "src/c.txt").write_bytes(mine + b"and more, unstaged\n")
    (b.path / "notes.txt").write_text("untracked, mine\n")
    staged_before = git(b.path, "ls-files", "-s", "--", "src/c.txt")
    content_before = (b.path / "src/c.txt").read_bytes()
    res = open_land(b)
    assert res.landed, res.message
    assert head_of(b.path) == b.tip
    assert (b.path / "a.txt").read_text() == "alpha changed by ws-a\n"
    assert (b.path / "new/file.txt").read_text() == "added by ws-b\n"
    assert not (b.path / "b.txt").exists()
    assert (b.path / "src/c.txt").read_bytes() == content_before
    assert (b.path / "notes.txt").read_text() == "untracked, mine\n"
    assert git(b.path, "ls-files", "-s", "--", "src/c.txt") == staged_before
    staged = git(b.path, "diff", "--cached", "--name-only")
    unstaged = git(b.path, "diff", "--name-only")
    assert (staged, unstaged) == {"unstaged": ("", "src/c.txt"), "staged": ("src/c.txt", ""),
                                  "both": ("src/c.txt", "src/c.txt")}[how]
    assert git(b.path, "ls-files", "--others", "--exclude-standard") == "notes.txt"
    fsck_clean(b.path)


def test_ignored_file_in_the_way_is_refused_and_kept(tmp_path: Path) -> None:
    b = scripted_run(tmp_path / "repo", [
        ("ws-a", "committed", {"secrets.env": b"TOKEN=from-the-patch\n"}),
    ], files={".gitignore": "*.env\n", "a.txt": "alpha\n"})
    (b.path / "secrets.env").write_text("TOKEN=the user's real secret\n")
    before = snapshot_files(b.path)
    res = open_land(b)
    assert not res.landed
    assert "ignored" in res.message and "secrets.env" in res.message
    assert f"uet land {b.run}" in res.message and "\n" not in res.message
    assert snapshot_files(b.path) == before
    assert head_of(b.path) == b.base
    assert open_intent(b.repo, b.run) is None
    assert not (b.path / ".git/index.lock").exists()
    fsck_clean(b.path)


def _start_rebase(path: Path) -> None:
    # `git rebase -i` of main, stopped at a `break` the user put first: mid-rebase.
    git(path, "-c", "sequence.editor=sed -i 1ibreak", "rebase", "-i", "HEAD")
    assert (path / ".git/rebase-merge").is_dir()


def _start_merge(path: Path) -> None:
    git(path, "branch", "side")
    git(path, "checkout", "-q", "side")
    (path / "side.txt").write_text("side\n")
    git(path, "add", "side.txt")
    git(path, "commit", "-q", "-m", "side")
    git(path, "checkout", "-q", "main")
    git(path, "merge", "--no-ff", "--no-commit", "side")
    assert (path / ".git/MERGE_HEAD").exists()


@pytest.mark.parametrize(("op", "start"), [("rebase", _start_rebase), ("merge", _start_merge)])
def test_operation_in_progress_is_refused(tmp_path: Path, op: str, start: object) -> None:
    b = two_committed(tmp_path)
    start(b.path)  # type: ignore[operator]
    before = snapshot_files(b.path)
    blockers = landing_blockers(b.repo, "main")
    assert any(f"a {op} is in progress" in line for line in blockers), blockers
    res = open_land(b)
    assert not res.landed
    assert f"a {op} is in progress" in res.message and "\n" not in res.message
    assert head_of(b.path) == b.base
    assert snapshot_files(b.path) == before
    git(b.path, op, "--abort")
    assert landing_blockers(b.repo, "main") == []
    assert open_land(b).landed
    assert head_of(b.path) == b.tip
    fsck_clean(b.path)


def test_landing_blockers_ignore_local_changes(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "a.txt").write_text("a change the landing may or may not touch\n")
    assert landing_blockers(b.repo, "main") == []
    (b.path / ".git/index.lock").write_text("")
    lines = landing_blockers(b.repo, "main")
    assert len(lines) == 1 and "index.lock" in lines[0]
    assert landing_blockers(b.repo, "no-such-branch") == []


def test_target_moved_by_a_tampering_tool_is_named_not_rebased(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "checkout", "-q", "--detach")
    planted = make_commit(b.repo, build_tree(b.repo, b.base, {"evil.txt": b"x\n"}), [b.base],
                          "planted by a tool")
    git(b.path, "update-ref", "refs/heads/main", planted)
    with Ledger.open(b.repo, b.run) as ledger:
        ledger.record("ws-t", "quarantined", attempt=1, reason="tampered",
                      summary="the repository was changed outside the worktree while it "
                              f"ran (1 change)\nref refs/heads/main moved {b.base} -> {planted}")
        for rebase in (False, True):
            res = land(b.repo, ledger, rebase=rebase)
            assert not res.landed
            assert "ws-t" in res.message and "tampered" in res.message
            assert "--rebase would build on that commit" in res.message
            assert "`uet land" in res.message and "--rebase`" not in res.message
    assert head_of(b.path) == planted
    # Once the user puts main back, the run lands as verified.
    git(b.path, "update-ref", "refs/heads/main", b.base)
    assert open_land(b).landed
    assert head_of(b.path) == b.tip


def test_target_moved_by_someone_else_still_suggests_rebase(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "commit", "-q", "--allow-empty", "-m", "the user's own commit")
    with Ledger.open(b.repo, b.run) as ledger:
        ledger.record("ws-t", "quarantined", attempt=1, reason="tampered",
                      summary=f"changed\nref refs/heads/other moved {b.base} -> {b.tip}\n"
                              f"ref refs/heads/main moved {b.tip} -> {b.base}")
        res = land(b.repo, ledger)
    assert not res.landed and f"uet land {b.run} --rebase" in res.message


def test_a_dirty_submodule_does_not_stop_an_unrelated_landing(tmp_path: Path) -> None:
    sub = make_repo(tmp_path / "sub", {"lib.txt": "lib\n"})
    path = make_repo(tmp_path / "repo", {"a.txt": "alpha\n"})
    git(path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    git(path, "commit", "-q", "-m", "a submodule")
    b = scripted_run(path, [("ws-a", "committed", {"a.txt": b"alpha changed\n"})])
    (path / "sub/lib.txt").write_text("the user's work inside the submodule\n")
    (path / "sub/new.txt").write_text("untracked in the submodule\n")
    res = open_land(b)
    assert res.landed, res.message
    assert head_of(path) == b.tip
    assert (path / "a.txt").read_text() == "alpha changed\n"
    assert (path / "sub/lib.txt").read_text() == "the user's work inside the submodule\n"
    assert (path / "sub/new.txt").exists()
    assert git(path, "status", "--porcelain", "--ignore-submodules=none") == "M sub"
    fsck_clean(path)
