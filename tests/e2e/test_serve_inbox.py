"""Inbox refs (``refs/uet/inbox/RUN/WS/N``, where remote workers push their patches): the ref
layout and what ``uet fsck`` accepts and reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo, uet
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.errors import UetError
from uet_git.ledger.inbox import prune_all_inbox, prune_inbox
from uet_git.ledger.layout import KINDS, inbox_prefix, inbox_ref, parse_ref

RUN = "20261125-101502-3f2a"


def test_inbox_ref_round_trip():
    name = inbox_ref(RUN, "a-b.c", 3)
    assert name == f"refs/uet/inbox/{RUN}/a-b.c/3"
    assert name.startswith(inbox_prefix(RUN))
    p = parse_ref(name)
    assert p is not None and (p.kind, p.run, p.ws, p.attempt) == ("inbox", RUN, "a-b.c", 3)
    assert "inbox" in KINDS


@pytest.mark.parametrize("tail", ["a", "a/0", "a/01", "a/1/2", "A/1", "a/x", "a/\u0663"])
def test_inbox_ref_fixed_depth_and_one_spelling(tail: str):
    assert parse_ref(f"refs/uet/inbox/{RUN}/{tail}") is None


@pytest.mark.parametrize("args", [("bad", "a", 1), (RUN, "A", 1), (RUN, "a", 0),
                                  (RUN, "a", True), (RUN, "a..b", 1)])
def test_inbox_ref_refuses_bad_parts(args: tuple[str, str, int]):
    with pytest.raises(UetError):
        inbox_ref(*args)


def _fsck(path: Path) -> tuple[int, str]:
    r = uet("fsck", cwd=path)
    return r.returncode, r.stdout + r.stderr


def test_fsck_accepts_inbox_refs(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    # attempt 1 of a, recorded: the inbox ref is the recorded patch; attempt 2 of b: pushed,
    # not recorded yet (a live run's worker got there first).
    git(a, "update-ref", inbox_ref(s.run, "a", 1), s.patches["a"])
    b2 = uet_commit(s.repo, s.base, {"b.txt": "b2\n"}, "b", s.run, attempt=2)
    git(a, "update-ref", inbox_ref(s.run, "b", 2), b2)
    code, out = _fsck(a)
    assert code == 0, out


def test_fsck_reports_bad_inbox_refs(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    other = "20261125-101503-3f2b"
    wrong_run = uet_commit(s.repo, s.base, {"x": "1\n"}, "c", other, attempt=1)
    wrong_ws = uet_commit(s.repo, s.base, {"x": "2\n"}, "c", s.run, attempt=1)
    wrong_n = uet_commit(s.repo, s.base, {"x": "3\n"}, "d", s.run, attempt=1)
    moved = uet_commit(s.repo, s.base, {"x": "4\n"}, "b", s.run, attempt=1)
    unplanned = uet_commit(s.repo, s.base, {"x": "5\n"}, "zz", s.run, attempt=1)
    git(a, "update-ref", inbox_ref(s.run, "c", 1), wrong_run)
    git(a, "update-ref", inbox_ref(s.run, "e", 1), wrong_ws)
    git(a, "update-ref", inbox_ref(s.run, "d", 2), wrong_n)
    git(a, "update-ref", inbox_ref(s.run, "b", 1), moved)  # b's attempt 1 patch is recorded
    git(a, "update-ref", inbox_ref(s.run, "zz", 1), unplanned)
    tree = git(a, "rev-parse", "HEAD^{tree}")
    git(a, "update-ref", inbox_ref(s.run, "a", 2), tree)
    code, out = _fsck(a)
    assert code != 0
    assert f"inbox/{s.run}/c/1: its commit {wrong_run[:12]} says Uet-Run {other}" in out
    assert f"inbox/{s.run}/e/1: its commit {wrong_ws[:12]} says Uet-Workstream c" in out
    assert f"inbox/{s.run}/d/2: its commit {wrong_n[:12]} says Uet-Attempt 1" in out
    assert f"inbox/{s.run}/b/1 points to {moved[:12]}" in out and "never moves" in out
    assert f"inbox/{s.run}/zz/1: inbox ref of a workstream the plan does not have" in out
    assert f"inbox/{s.run}/a/2 is not a commit" in out


def test_fsck_inbox_ref_without_ledger(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    git(a, "update-ref", inbox_ref(RUN, "a", 1), s.patches["a"])
    code, out = _fsck(a)
    assert code != 0 and f"inbox/{RUN}/a/1: ref without a ledger" in out


def _inbox(path: Path, run: str) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/uet/inbox/{run}/")
    return dict(line.split(" ") for line in out.splitlines())


def test_prune_inbox_removes_only_terminal_refs(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, led = scripted_run(a, keep_open=True)
    assert led is not None
    try:
        recorded = inbox_ref(s.run, "a", 1)  # attempt 1 of a: its patch ref exists
        git(a, "update-ref", recorded, s.patches["a"])
        later = inbox_ref(s.run, "b", 2)  # pushed, not recorded yet: in flight
        b2 = uet_commit(s.repo, s.base, {"b.txt": "b2\n"}, "b", s.run, attempt=2)
        git(a, "update-ref", later, b2)
        assert prune_inbox(s.repo, s.run) == [recorded]
        assert _inbox(a, s.run) == {later: b2}
        assert prune_inbox(s.repo, s.run) == []
        led.event("run: finish", "done")  # the run is over: nothing is in flight
    finally:
        led.close()
    assert prune_all_inbox(s.repo) == [later]
    assert _inbox(a, s.run) == {}
    assert git(a, "cat-file", "-t", s.patches["a"]) == "commit"  # kept by its patch ref
    r = uet("fsck", cwd=a)
    assert r.returncode == 0, r.stdout + r.stderr


def test_prune_inbox_keeps_a_patch_whose_patch_ref_is_missing(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    ref = inbox_ref(s.run, "b", 1)
    git(a, "update-ref", ref, s.patches["b"])
    git(a, "update-ref", "-d", f"refs/uet/patches/{s.run}/b/1")
    assert prune_inbox(s.repo, s.run) == []  # the inbox ref is the only one keeping it
    assert _inbox(a, s.run) == {ref: s.patches["b"]}


def test_prune_inbox_keeps_refs_without_a_ledger(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    ref = inbox_ref(RUN, "a", 1)
    git(a, "update-ref", ref, s.patches["a"])
    assert prune_all_inbox(s.repo) == []
    assert _inbox(a, RUN) == {ref: s.patches["a"]}


def test_uet_push_leaves_inbox_refs_behind(tmp_path: Path):
    """Inbox refs are transport to the coordinator, not ledger state: `uet push` and
    `uet fetch` do not copy them (the patch refs carry what was recorded)."""
    a = make_repo(tmp_path / "A")
    s, _ = scripted_run(a)
    git(a, "update-ref", inbox_ref(s.run, "a", 1), s.patches["a"])
    b = tmp_path / "B.git"
    git(tmp_path, "init", "-q", "--bare", str(b))
    r = uet("push", b.as_uri(), cwd=a)
    assert r.returncode == 0, r.stdout + r.stderr
    assert git(b, "for-each-ref", "refs/uet/inbox/") == ""
    assert git(b, "for-each-ref", f"refs/uet/patches/{s.run}/a/") != ""
    git(b, "update-ref", inbox_ref(s.run, "c", 1), s.patches["c"])
    r = uet("fetch", b.as_uri(), cwd=a)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _inbox(a, s.run) == {inbox_ref(s.run, "a", 1): s.patches["a"]}
