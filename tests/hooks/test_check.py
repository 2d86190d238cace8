"""`uet check`: committed patches pass; quarantined, dropped, unknown ones fail with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, uet
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.errors import UetError
from uet_git.hooks.check import check_revs
from uet_git.ledger.writer import Ledger


def test_integration_range_passes(repo: Path) -> None:
    s, _ = scripted_run(repo)
    checked, problems = check_revs(s.repo, [f"{s.base}..{s.integration}"])
    assert (checked, problems) == (2, [])
    proc = uet("check", f"{s.base}..refs/uet/integration/{s.run}", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "2 uet patches, all committed" in proc.stdout


def test_quarantined_dropped_unknown_fail_with_reason(repo: Path) -> None:
    s, _ = scripted_run(repo)
    b, e = s.patches["b"], s.patches["e"]
    _, problems = check_revs(s.repo, [f"{s.base}..{b}"])
    assert problems == [f"{b[:12]} 'b: change': b: quarantined (verify-failed) in run {s.run}"]
    _, problems = check_revs(s.repo, [f"{s.base}..{e}"])
    assert problems == [f"{e[:12]} 'e: change': e: dropped, not committed, in run {s.run}"]
    ghost = uet_commit(s.repo, s.base, {"g": "g"}, "g", "20200101-000000-0000")
    _, problems = check_revs(s.repo, [f"{s.base}..{ghost}"])
    assert len(problems) == 1 and "run 20200101-000000-0000 is unknown here" in problems[0]
    stray = uet_commit(s.repo, s.base, {"a.txt": "other"}, "a", s.run)
    _, problems = check_revs(s.repo, [f"{s.base}..{stray}"])
    assert len(problems) == 1 and "not a patch the ledger recorded for a" in problems[0]
    # one line per bad commit; the CLI exits 1 and prints them
    proc = uet("check", b, e, "--not", s.base, cwd=repo)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3 and "quarantined (verify-failed)" in proc.stderr
    assert lines[-1].startswith("uet: check: 2 of 2 uet patches")


def test_plain_commits_and_ledger_commits_are_ignored(repo: Path) -> None:
    s, _ = scripted_run(repo)
    (repo / "x.txt").write_text("x")
    git(repo, "add", "x.txt")
    git(repo, "commit", "-q", "-m", "plain work")
    assert check_revs(s.repo, ["HEAD~1..HEAD"]) == (0, [])
    # the ledger branch itself carries Uet-Workstream trailers on its records
    assert check_revs(s.repo, [f"refs/uet/ledger/{s.run}"]) == (0, [])


def test_rolled_back_and_superseded(repo: Path) -> None:
    s, _ = scripted_run(repo)
    with Ledger.open(s.repo, s.run) as led:
        led.record("a", "rolled-back", attempt=1)
        pb2 = uet_commit(s.repo, s.base, {"b.txt": "b2"}, "b", s.run, attempt=2)
        led.record("b", "created", attempt=2, patch=pb2)
    a = s.candidates["a"]
    _, problems = check_revs(s.repo, [f"{s.base}..{a}"])
    assert problems == [f"{a[:12]} 'a: change': a: rolled back in run {s.run}"]
    b1 = s.patches["b"]
    _, problems = check_revs(s.repo, [f"{s.base}..{b1}"])
    assert problems == [f"{b1[:12]} 'b: change': b: quarantined (verify-failed) in run {s.run}"]
    _, problems = check_revs(s.repo, [f"{s.base}..{pb2}"])
    assert problems == [f"{pb2[:12]} 'b: change': b: created, not committed, in run {s.run}"]


def test_bad_range(repo: Path) -> None:
    s, _ = scripted_run(repo)
    with pytest.raises(UetError, match="bad revision range"):
        check_revs(s.repo, ["nosuchbranch..HEAD"])
    proc = uet("check", "nosuchbranch..HEAD", cwd=repo)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_superseded_candidate_fails(repo: Path) -> None:
    """applied -> queued (the tip moved) -> applied again: only the last candidate passes."""
    from uet_git.gitrepo import Repo

    r = Repo.open(repo)
    base = r.rev_parse("HEAD")
    assert base
    with Ledger.create(r, base=base, target="main", plan={}) as led:
        run = led.run
        p = uet_commit(r, base, {"w.txt": "w"}, "w", run)
        led.record("w", "created", attempt=1, patch=p)
        led.record("w", "validated", attempt=1)
        led.record("w", "queued", attempt=1)
        old = uet_commit(r, base, {"w.txt": "w", "x": "1"}, "w", run)
        led.record("w", "applied", attempt=1, candidate=old)
        led.record("w", "queued", attempt=1)
        new = uet_commit(r, base, {"w.txt": "w", "x": "2"}, "w", run)
        led.record("w", "applied", attempt=1, candidate=new)
        led.record("w", "verified", attempt=1)
        led.record("w", "committed", attempt=1, integration=new)
    assert check_revs(r, [f"{base}..{new}"]) == (1, [])
    _, problems = check_revs(r, [f"{base}..{old}"])
    assert problems == [f"{old[:12]} 'w: change': w: a superseded candidate (the tip moved; "
                        f"w is committed as {new[:12]}) in run {run}"]
