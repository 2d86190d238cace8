"""repair(repo, run): refs reset from the ledger in one transaction, with a run: repair commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.errors import UetError
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.lock import LedgerBusy
from uet_git.ledger.repair import repair
from uet_git.ledger.writer import Ledger


def test_a_forged_integration_ref_is_reset_from_the_ledger(repo: Path) -> None:
    s, _ = scripted_run(repo)
    iref = f"refs/uet/integration/{s.run}"
    # A forged commit that passes the chain check: on a's candidate, carrying c's trailers.
    forged = uet_commit(s.repo, s.candidates["a"], {"c.txt": "evil\n"}, "c", s.run)
    git(repo, "update-ref", iref, forged)
    problems = fsck(s.repo, s.run)
    assert problems == [f"{s.run}: {iref} points to {forged[:12]}, the ledger recorded "
                        f"{s.integration[:12]} (`uet fsck --repair {s.run}` resets it)"]
    with pytest.raises(UetError, match=rf"refs disagree with the ledger \({iref} points to "
                                       rf"{forged[:12]}.*uet fsck --repair {s.run}"):
        Ledger.open(s.repo, s.run)
    assert query.recorded_integration_tip(s.repo, s.run) == s.integration
    lines = repair(s.repo, s.run)
    assert lines == [f"{iref} points to {forged[:12]}, the ledger says {s.integration[:12]}"]
    assert git(repo, "rev-parse", iref) == s.integration
    assert fsck(s.repo, s.run) == []
    log = git(repo, "log", "-1", "--format=%s%n%b", f"refs/uet/ledger/{s.run}")
    assert log.startswith("run: repair\nrefs made to agree with the ledger:\n- " + iref)
    assert "Uet-Repaired: 1" in log
    assert repair(s.repo, s.run) == []  # nothing left to do
    git(repo, "fsck", "--strict", "--no-dangling")


def test_repair_fixes_every_disagreeing_ref_at_once(repo: Path) -> None:
    s, _ = scripted_run(repo)
    r = s.run
    git(repo, "update-ref", f"refs/uet/integration/{r}", s.base)
    git(repo, "update-ref", "-d", f"refs/uet/quarantined/{r}/b")
    git(repo, "update-ref", f"refs/uet/queued/{r}/d", s.base)
    git(repo, "update-ref", f"refs/uet/patches/{r}/b/1", s.patches["a"])
    tip = git(repo, "rev-parse", f"refs/uet/ledger/{r}")
    lines = repair(s.repo, r)
    assert len(lines) == 4, lines
    assert git(repo, "rev-parse", f"refs/uet/ledger/{r}~1") == tip  # one commit on top
    assert git(repo, "rev-parse", f"refs/uet/quarantined/{r}/b") == s.patches["b"]
    assert git(repo, "rev-parse", f"refs/uet/patches/{r}/b/1") == s.patches["b"]
    assert fsck(s.repo) == []


def test_repair_of_a_live_run_is_refused(repo: Path) -> None:
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    with pytest.raises(LedgerBusy, match=f"run {s.run} is being written"):
        repair(s.repo, s.run)
    led.close()
    assert repair(s.repo, s.run) == []
