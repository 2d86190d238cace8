"""expected_refs: the refs a run must have, from the ledger alone, against git's own listing."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from tests.conftest import git
from tests.hooks.ledgerkit import scripted_run
from uet_git.ledger.expected import disagreements, expected_refs, recorded_integration
from uet_git.ledger.gc import gc
from uet_git.ledger.log import read_ledger


def run_refs(repo: Path, run: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    return {name: oid for name, oid in (ln.split() for ln in out.splitlines()) if f"/{run}" in name}


def test_expected_refs_are_the_refs_the_writer_made(repo: Path) -> None:
    s, _ = scripted_run(repo)
    log = read_ledger(s.repo, s.run)
    assert expected_refs(log) == run_refs(repo, s.run)
    assert recorded_integration(log) == s.integration == s.candidates["c"]
    assert disagreements(log, run_refs(repo, s.run)) == []


def test_expected_refs_follow_a_gc_event(repo: Path) -> None:
    s, _ = scripted_run(repo)
    gc(s.repo, timedelta(days=30), now=time.time() + 40 * 86400, prune_dropped=True)
    log = read_ledger(s.repo, s.run)
    assert log.events[-1].subject == "run: gc"
    assert expected_refs(log) == run_refs(repo, s.run)


def test_disagreements_name_each_ref_once(repo: Path) -> None:
    s, _ = scripted_run(repo)
    log = read_ledger(s.repo, s.run)
    refs = run_refs(repo, s.run)
    r = s.run
    forged = dict(refs)
    forged[f"refs/uet/integration/{r}"] = s.base
    del forged[f"refs/uet/quarantined/{r}/b"]
    forged[f"refs/uet/queued/{r}/zz"] = s.base
    fixes = disagreements(log, forged)
    assert [(name, old, new) for name, old, new, _ in fixes] == [
        (f"refs/uet/integration/{r}", s.base, s.integration),
        (f"refs/uet/quarantined/{r}/b", None, s.patches["b"]),
        (f"refs/uet/queued/{r}/zz", s.base, None),
    ]
    assert all("\n" not in why for *_, why in fixes)
