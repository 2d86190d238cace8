"""gc on scripted runs: what goes, what stays, live runs, dry runs; checked with git itself."""

from __future__ import annotations

import ast
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest

import uet_git.ledger as ledger_pkg
from tests.conftest import git, uet
from tests.hooks.ledgerkit import scripted_run
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import has_object
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.gc import gc, parse_age
from uet_git.ledger.writer import Ledger

LATER = time.time() + 40 * 86400  # "now" for gc: 40 days after the run


def uet_refs(repo: Path) -> set[str]:
    return set(git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/").split())


def test_recent_runs_are_not_touched(repo: Path) -> None:
    s, _ = scripted_run(repo)
    before = uet_refs(repo)
    res = gc(s.repo, timedelta(days=30))
    assert res.removed == [] and res.packed
    assert uet_refs(repo) == before


def test_dry_run_lists_and_changes_nothing(repo: Path) -> None:
    s, _ = scripted_run(repo)
    before = uet_refs(repo)
    tip = git(repo, "rev-parse", f"refs/uet/ledger/{s.run}")
    res = gc(s.repo, timedelta(days=30), dry_run=True, now=LATER)
    r = s.run
    assert sorted(res.removed) == sorted([
        f"refs/uet/committed/{r}/a", f"refs/uet/committed/{r}/c",
        f"refs/uet/patches/{r}/a/1", f"refs/uet/patches/{r}/c/1",
    ])
    assert res.pruned == []
    assert uet_refs(repo) == before
    assert git(repo, "rev-parse", f"refs/uet/ledger/{s.run}") == tip
    assert not (repo / ".git" / "packed-refs").exists() or "refs/uet" not in (
        repo / ".git" / "packed-refs").read_text()


def test_gc_removes_finished_keeps_quarantined_and_the_ledger(repo: Path) -> None:
    s, _ = scripted_run(repo)
    r = s.run
    res = gc(s.repo, timedelta(days=30), now=LATER)
    assert len(res.removed) == 4 and res.packed
    left = uet_refs(repo)
    assert left == {
        f"refs/uet/ledger/{r}", f"refs/uet/integration/{r}",
        f"refs/uet/quarantined/{r}/b", f"refs/uet/quarantined/{r}/d",
        f"refs/uet/patches/{r}/b/1", f"refs/uet/dropped/{r}/e", f"refs/uet/patches/{r}/e/1",
    }
    assert git(repo, "log", "-1", "--format=%s", f"refs/uet/ledger/{r}") == "run: gc"
    assert f"refs/uet/ledger/{r}" in (repo / ".git" / "packed-refs").read_text()
    # readers still answer, fsck is clean
    st = query.run_status(s.repo, r)
    assert {w.ws: (w.state, w.collected) for w in st.workstreams} == {
        "a": ("committed", True), "c": ("committed", True), "b": ("quarantined", False),
        "d": ("quarantined", False), "e": ("dropped", False)}
    assert fsck(s.repo) == []
    # a later gc (now the newest ledger commit is the gc record) still sees an old run
    res2 = gc(s.repo, timedelta(days=30), include_quarantined=True, now=LATER,
              prune_dropped=True)
    assert sorted(res2.removed) == sorted([
        f"refs/uet/quarantined/{r}/b", f"refs/uet/quarantined/{r}/d", f"refs/uet/patches/{r}/b/1",
        f"refs/uet/dropped/{r}/e", f"refs/uet/patches/{r}/e/1"])
    assert res2.pruned == [f"{r}: e (dropped): refs/uet/dropped/{r}/e ({s.patches['e'][:12]}), "
                           f"refs/uet/patches/{r}/e/1 ({s.patches['e'][:12]})"]
    assert uet_refs(repo) == {f"refs/uet/ledger/{r}", f"refs/uet/integration/{r}"}
    # integration kept: its work is not on main (never landed)
    assert any("kept refs/uet/integration" in (x.note or "") for x in res2.runs)
    assert fsck(s.repo) == []
    # evidence of the collected quarantine survives git gc --prune=now
    git(repo, "gc", "--prune=now", "--quiet")
    assert query.evidence(s.repo, r, "b", 1, "acceptance.log") == b"FAILED test_b\n"
    # c's patch (not its candidate) was only kept by its patch ref: pruned now, and that is
    # expected after `run: gc`, not a violation
    fresh = Repo.open(repo)
    assert not has_object(fresh, s.patches["c"])
    assert not has_object(fresh, s.patches["e"])  # asked for with prune_dropped
    assert fsck(fresh) == []


def test_default_gc_never_makes_a_dropped_patch_unreachable(repo: Path) -> None:
    s, _ = scripted_run(repo)
    with Ledger.open(s.repo, s.run) as led:  # a rolled-back one too
        led.record("a", "rolled-back", attempt=1)
    res = gc(s.repo, timedelta(days=30), now=LATER)
    assert res.pruned == []
    assert f"refs/uet/dropped/{s.run}/e" not in res.removed
    assert f"refs/uet/patches/{s.run}/a/1" not in res.removed
    git(repo, "gc", "--prune=now", "--quiet")
    fresh = Repo.open(repo)
    assert has_object(fresh, s.patches["e"]) and has_object(fresh, s.patches["a"])
    assert git(repo, "cat-file", "-t", s.patches["e"]) == "commit"
    assert fsck(fresh) == []
    # asked for: listed, then gone
    listed = gc(s.repo, timedelta(days=30), now=LATER, prune_dropped=True, dry_run=True)
    assert [line.split(":")[1].strip() for line in listed.pruned] == ["a (rolled-back)",
                                                                     "e (dropped)"]
    gc(s.repo, timedelta(days=30), now=LATER, prune_dropped=True)
    git(repo, "gc", "--prune=now", "--quiet")
    assert not has_object(Repo.open(repo), s.patches["e"])
    assert fsck(Repo.open(repo)) == []


def test_landed_run_loses_its_integration_ref(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "merge", "--ff-only", "-q", s.integration)  # landed by hand
    gc(s.repo, timedelta(days=30), include_quarantined=True, now=LATER, prune_dropped=True)
    assert uet_refs(repo) == {f"refs/uet/ledger/{s.run}"}
    assert fsck(s.repo) == []


def test_live_run_is_never_touched_and_refs_stay_loose(repo: Path) -> None:
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    try:
        before = uet_refs(repo)
        res = gc(s.repo, timedelta(0), include_quarantined=True, now=LATER)
        assert res.removed == [] and not res.packed
        assert res.skipped == [f"{s.run}: live (a uet process holds its lock), not touched"]
        assert uet_refs(repo) == before
        assert not (repo / ".git" / "packed-refs").exists()
        # the live writer still works
        led.record("b", "dropped", attempt=1)
    finally:
        led.close()


def test_cli_gc(repo: Path) -> None:
    s, _ = scripted_run(repo)
    proc = uet("gc", "--older-than", "0s", "--dry-run", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert f"{s.run}: would remove 4 refs of 2 workstreams" in proc.stdout
    assert f"  refs/uet/committed/{s.run}/a" in proc.stdout
    proc = uet("gc", "--older-than", "bogus", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.startswith("uet: --older-than 'bogus'")
    time.sleep(1.1)  # the run must be strictly older than 1s
    proc = uet("gc", "--older-than", "1s", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert f"{s.run}: removed 4 refs" in proc.stdout and "packed refs" in proc.stdout


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("2w") == timedelta(weeks=2)
    assert parse_age("7") == timedelta(days=7)
    with pytest.raises(UetError):
        parse_age("x1")


_MAY_CALL_GIT = re.compile(r"\b(run_)?git\b[\s\\]*\(")


def test_the_ledger_starts_no_git_itself() -> None:
    """Every git the ledger needs goes through gitrepo's typed API (pack-refs included):
    no ``repo.git(...)`` or ``run_git(...)`` call in uet_git/ledger."""
    calls = []
    for path in sorted(Path(ledger_pkg.__file__).parent.glob("*.py")):
        text = path.read_text()
        # Only a module where the name is followed by "(" (across blanks or a backslash
        # line break) can call it: the others are not parsed.
        if not _MAY_CALL_GIT.search(text):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in ("git", "run_git"):
                    calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
