"""Landing on real repositories: ledger states are scripted with the real Ledger writer and real
patch/candidate commits; results are checked with the git CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.engine import land as land_mod
from uet_git.engine.land import land, land_events
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger

FILES = {"a.txt": "alpha\n", "b.txt": "beta\n", "src/c.txt": "gamma\n"}


@dataclass
class Built:
    path: Path
    repo: Repo
    run: str
    base: str
    tip: str
    candidates: dict[str, str] = field(default_factory=dict)
    patches: dict[str, str] = field(default_factory=dict)


def scripted_run(
    path: Path,
    steps: Sequence[tuple[str, str, Mapping[str, bytes | None]]],
    *,
    deps: Mapping[str, list[str]] | None = None,
    target: str | None = "main",
    files: Mapping[str, str] | None = None,
) -> Built:
    """A repository with one commit and a run whose workstreams went through ``steps``:
    ``(ws, outcome, changes)`` with outcome ``committed``, ``quarantined:REASON`` (after a
    patch), ``failed:REASON`` (no patch), ``blocked`` or ``pending`` (planned, never
    recorded). Committed candidates stack on the integration tip in order."""
    if not (path / ".git").exists():
        make_repo(path, dict(files or FILES))
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base is not None
    deps = dict(deps or {})
    plan = {"nodes": [{"id": ws, "depends_on": deps.get(ws, [])} for ws, _, _ in steps]}
    built = Built(path, repo, "", base, base)
    with Ledger.create(repo, base=base, target=target, plan=plan) as ledger:
        built.run = ledger.run
        for ws, outcome, changes in steps:
            if outcome == "pending":
                continue
            if outcome == "blocked":
                ledger.record(ws, "blocked", attempt=1, summary="dependency quarantined")
                continue
            if outcome.startswith("failed:"):  # the tool failed: no patch at all
                ledger.record(ws, "quarantined", attempt=1, reason=outcome.split(":", 1)[1])
                continue
            msg = f"{ws}: scripted change\n\nUet-Workstream: {ws}\nUet-Run: {ledger.run}\n"
            patch = make_commit(repo, build_tree(repo, built.tip, changes), [built.tip], msg)
            built.patches[ws] = patch
            ledger.record(ws, "created", attempt=1, patch=patch)
            ledger.record(ws, "validated", attempt=1)
            ledger.record(ws, "queued", attempt=1)
            if outcome.startswith("quarantined:"):
                ledger.record(ws, "quarantined", attempt=1, reason=outcome.split(":", 1)[1])
                continue
            assert outcome == "committed", outcome
            # The candidate: the patch merged onto the tip (here the patch is built on the tip).
            cand = make_commit(repo, build_tree(repo, built.tip, changes), [built.tip], msg)
            ledger.record(ws, "applied", attempt=1, candidate=cand)
            ledger.record(ws, "verified", attempt=1)
            ledger.record(ws, "committed", attempt=1, integration=cand)
            built.candidates[ws] = cand
            built.tip = cand
    return built


def two_committed(tmp_path: Path, **kw: object) -> Built:
    return scripted_run(tmp_path / "repo", [
        ("ws-a", "committed", {"a.txt": b"alpha changed by ws-a\n"}),
        ("ws-b", "committed", {"new/file.txt": b"added by ws-b\n", "b.txt": None}),
    ], **kw)  # type: ignore[arg-type]


def fsck_clean(path: Path) -> None:
    git(path, "fsck", "--strict", "--no-progress")


def head_of(path: Path, ref: str = "refs/heads/main") -> str:
    return git(path, "rev-parse", ref)


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def open_land(b: Built, **kw: object) -> land_mod.LandResult:
    with Ledger.open(b.repo, b.run) as ledger:
        return land(b.repo, ledger, **kw)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("how", ["unstaged", "staged", "untouched-file"])
def test_land_refuses_dirty_checkout(tmp_path: Path, how: str) -> None:
    b = two_committed(tmp_path)
    name = "src/c.txt" if how == "untouched-file" else "a.txt"
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
    real = land_mod.checkouts_of

    def racing(repo: Repo, ref: str) -> list[land_mod.Checkout]:
        # Another process moves the target after land() checked it, before the CAS.
        git(b.path, "update-ref", "refs/heads/main", other)
        return real(repo, ref)

    monkeypatch.setattr(land_mod, "checkouts_of", racing)
    res = open_land(b)
    assert not res.landed
    assert f"uet land {b.run}" in res.message
    assert head_of(b.path) == other  # not clobbered
    assert land_events(b.repo, b.run) == []
    fsck_clean(b.path)


def test_land_cas_race_checked_out_restores_files(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    b = two_committed(tmp_path)
    other = make_commit(b.repo, build_tree(b.repo, b.base, {"x.txt": b"x\n"}), [b.base], "other")
    real = land_mod.local_changes

    def racing(repo: Repo, checkout: Path, limit: int = 5) -> list[str]:
        found = real(repo, checkout, limit)
        # The branch moves under the checkout (like `git branch -f` elsewhere) after the check.
        git(b.path, "update-ref", "refs/heads/main", other, b.base)
        return found

    monkeypatch.setattr(land_mod, "local_changes", racing)
    res = open_land(b)
    assert not res.landed
    assert head_of(b.path) == other
    # The checkout's files and index are back to what they were (the base's tree).
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "b.txt").read_text() == "beta\n"
    assert not (b.path / "new").exists()
    assert git(b.path, "diff", "--cached", "--name-only", b.base) == ""
    assert git(b.path, "diff", "--name-only") == ""
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

