"""``uet gc`` removes terminal inbox refs (transport, not ledger state), whatever the run's
age, and never one whose attempt is still in flight or whose run is live."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, make_repo, uet
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.ledger.layout import inbox_prefix, inbox_ref


def _inbox(path: Path, run: str) -> set[str]:
    out = git(path, "for-each-ref", "--format=%(refname)", inbox_prefix(run))
    return set(out.split())


def test_gc_removes_recorded_inbox_refs_and_keeps_one_in_flight(tmp_path: Path):
    a = make_repo(tmp_path / "A")
    s, led = scripted_run(a, keep_open=True)
    assert led is not None
    recorded = inbox_ref(s.run, "a", 1)  # attempt 1 of a: its patch ref exists
    git(a, "update-ref", recorded, s.patches["a"])
    later = inbox_ref(s.run, "b", 2)  # pushed, not recorded yet
    git(a, "update-ref", later,
        uet_commit(s.repo, s.base, {"b.txt": "b2\n"}, "b", s.run, attempt=2))
    live = uet("gc", "--json", cwd=a)  # the run's writer holds its lock: not touched
    assert live.returncode == 0, live.stderr
    assert json.loads(live.stdout)["inbox_refs"] == []
    assert _inbox(a, s.run) == {recorded, later}
    led.close()

    dry = uet("gc", "--dry-run", "--json", cwd=a)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["inbox_refs"] == [recorded]
    assert _inbox(a, s.run) == {recorded, later}

    r = uet("gc", cwd=a)  # the default age: the run is not old, its inbox refs go anyway
    assert r.returncode == 0, r.stderr
    assert f"removed {recorded}" in r.stdout
    assert _inbox(a, s.run) == {later}
    assert git(a, "cat-file", "-t", s.patches["a"]) == "commit"  # kept by its patch ref
    f = uet("fsck", cwd=a)
    assert f.returncode == 0, f.stdout + f.stderr
