"""Ledger queries against runs recorded by the real writer, checked with the git CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.hooks.ledgerkit import EXPECTED_STATES, PLAN, scripted_run, uet_commit
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.fold import fold
from uet_git.ledger.writer import Ledger


def refs_by_state(repo_path: Path, run: str) -> dict[str, str]:
    """ws -> state read from `git for-each-ref refs/uet/` (the ground truth)."""
    out: dict[str, str] = {}
    for name in git(repo_path, "for-each-ref", "--format=%(refname)", "refs/uet/").split():
        parts = name.split("/")
        if len(parts) == 5 and parts[3] == run and parts[2] not in ("patches",):
            assert parts[4] not in out, f"two state refs for {parts[4]}"
            out[parts[4]] = parts[2]
    return out


def test_status_agrees_with_for_each_ref(repo: Path) -> None:
    s, _ = scripted_run(repo)
    st = query.run_status(s.repo, s.run)
    assert refs_by_state(repo, s.run) == EXPECTED_STATES
    got = {w.ws: w.state for w in st.workstreams}
    assert got == EXPECTED_STATES
    # plan order first, then anything else
    assert [w.ws for w in st.workstreams] == [n["id"] for n in PLAN["nodes"]]
    assert st.counts == {"committed": 2, "quarantined": 2, "dropped": 1}
    assert st.base == s.base and st.target == "main"
    assert st.integration == git(repo, "rev-parse", f"refs/uet/integration/{s.run}")
    assert st.integration == s.candidates["c"]
    recs = {w.ws: w for w in st.workstreams}
    assert recs["b"].reason == "verify-failed" and recs["b"].attempt == 1
    assert recs["d"].reason == "tool-failed" and recs["d"].patch is None
    assert recs["a"].patch == s.patches["a"] and recs["c"].candidate == s.candidates["c"]
    for w in st.workstreams:
        assert w.ref == f"refs/uet/{w.state}/{s.run}/{w.ws}"
        assert w.target == git(repo, "rev-parse", w.ref)
        assert w.started is not None and w.updated is not None
        assert w.duration == w.updated - w.started >= 0
    d = st.to_dict()
    assert set(d) == {"run", "base", "target", "started", "updated", "integration", "finished",
                      "landed", "landed_workstreams", "counts", "workstreams"}
    assert d["workstreams"][0]["started"].endswith("Z")


def test_pending_workstreams_come_from_the_plan(repo: Path) -> None:
    r = Repo.open(repo)
    base = r.rev_parse("HEAD")
    assert base
    with Ledger.create(r, base=base, target="main", plan=PLAN) as led:
        run = led.run
        p = uet_commit(r, base, {"a.txt": "a"}, "a", run)
        led.record("a", "created", attempt=1, patch=p)
    st = query.run_status(r, run)
    assert {w.ws: w.state for w in st.workstreams} == {
        "a": "created", "c": "pending", "d": "pending", "e": "pending", "b": "pending"}
    assert st.counts == {"created": 1, "pending": 4}


def test_history_matches_git_log(repo: Path) -> None:
    s, _ = scripted_run(repo)
    events = query.history(s.repo, s.run)
    oids = git(repo, "log", "--reverse", "--format=%H", f"refs/uet/ledger/{s.run}").split()
    assert [e.oid for e in events] == oids
    subjects = git(repo, "log", "--reverse", "--format=%s", f"refs/uet/ledger/{s.run}")
    assert [e.subject for e in events] == subjects.splitlines()
    assert events[0].subject == "run: start" and events[0].ws is None
    for e in events[1:]:
        assert e.subject == f"{e.ws}: {e.from_ or 'none'} -> {e.to}"
    b = query.history(s.repo, s.run, "b")
    assert [(e.from_, e.to) for e in b] == [
        (None, "created"), ("created", "validated"), ("validated", "queued"),
        ("queued", "quarantined")]
    assert b[-1].reason == "verify-failed" and b[-1].summary == "acceptance failed"
    assert b[-1].to_dict()["from"] == "queued"
    with pytest.raises(UetError, match="no workstream 'zz'"):
        query.history(s.repo, s.run, "zz")


def test_parse_trailers_agrees_with_git_interpret_trailers(repo: Path) -> None:
    s, _ = scripted_run(repo)
    # Every ledger commit's message from one `git log` (NUL between commits): the text
    # `git log -1 --format=%B` prints for each, stripped the same way.
    out = git(repo, "log", "-z", "--format=%H%n%B", f"refs/uet/ledger/{s.run}")
    messages = dict(entry.strip().split("\n", 1) for entry in out.split("\0") if entry.strip())
    for e in query.history(s.repo, s.run):
        msg = messages[e.oid].strip()
        parsed = git(repo, "interpret-trailers", "--parse", input=msg + "\n")
        expected = dict(line.split(": ", 1) for line in parsed.splitlines())
        assert query.parse_trailers(msg) == expected
        assert e.trailers == expected
    assert query.parse_trailers("subject only") == {}
    assert query.parse_trailers("s\n\nbody: not\na trailer block") == {}


def test_evidence_list_and_read(repo: Path) -> None:
    s, _ = scripted_run(repo)
    assert query.evidence(s.repo, s.run, "b") == ["acceptance.log", "tool.stdout"]
    assert query.evidence(s.repo, s.run, "b", 1, "acceptance.log") == b"FAILED test_b\n"
    # the same blob through git itself
    blob = git(repo, "show", f"refs/uet/ledger/{s.run}:evidence/b/1/acceptance.log")
    assert blob == "FAILED test_b"
    assert query.evidence(s.repo, s.run, "d") == ["tool.stderr"]
    with pytest.raises(UetError, match="no evidence 'nope'"):
        query.evidence(s.repo, s.run, "b", None, "nope")
    assert query.evidence(s.repo, s.run, "b", 7) == []


def test_list_runs_newest_last_and_only_this_runs_refs(repo: Path) -> None:
    s1, _ = scripted_run(repo)
    r = Repo.open(repo)
    with Ledger.create(r, base=s1.base, target="main", plan={"nodes": [{"id": "x"}]},
                       run_id="29991231-235959-ffff") as led:
        p = uet_commit(r, s1.base, {"x.txt": "x"}, "x", led.run)
        led.record("x", "created", attempt=1, patch=p)
        led.record("x", "quarantined", attempt=1, reason="too-large")
    runs = query.list_runs(r)
    assert [x.run for x in runs] == sorted([s1.run, "29991231-235959-ffff"])
    assert query.latest_run(r) == "29991231-235959-ffff"
    assert runs[0].counts == {"committed": 2, "quarantined": 2, "dropped": 1}
    assert runs[1].counts == {"quarantined": 1}
    # one run's status never shows the other's workstreams
    st = query.run_status(r, "29991231-235959-ffff")
    assert [(w.ws, w.state) for w in st.workstreams] == [("x", "quarantined")]
    assert query.resolve_run(r, None) == "29991231-235959-ffff"
    assert query.resolve_run(r, "2999") == "29991231-235959-ffff"
    with pytest.raises(UetError, match="no run"):
        query.resolve_run(r, "20200101-000000-0000")


def test_no_runs(tmp_path: Path) -> None:
    r = Repo.open(make_repo(tmp_path / "empty"))
    assert query.list_runs(r) == []
    assert query.latest_run(r) is None
    with pytest.raises(UetError, match="no runs"):
        query.resolve_run(r, None)


def test_new_attempt_resets_candidate_and_counts_attempts(repo: Path) -> None:
    r = Repo.open(repo)
    base = r.rev_parse("HEAD")
    assert base
    with Ledger.create(r, base=base, target="main", plan={}) as led:
        run = led.run
        p1 = uet_commit(r, base, {"w.txt": "1"}, "w", run)
        led.record("w", "created", attempt=1, patch=p1)
        led.record("w", "validated", attempt=1)
        led.record("w", "queued", attempt=1)
        led.record("w", "applied", attempt=1, candidate=p1)
        led.record("w", "quarantined", attempt=1, reason="hook-failed")
        p2 = uet_commit(r, base, {"w.txt": "2"}, "w", run, attempt=2)
        led.record("w", "created", attempt=2, patch=p2)
    st = query.run_status(r, run)
    (w,) = st.workstreams
    assert (w.state, w.attempt, w.patch, w.candidate, w.reason) == ("created", 2, p2, None, None)
    assert git(repo, "rev-parse", f"refs/uet/patches/{run}/w/1") == p1
    assert git(repo, "rev-parse", f"refs/uet/patches/{run}/w/2") == p2
    assert git(repo, "rev-parse", f"refs/uet/created/{run}/w") == p2


def test_run_events_mark_landed_and_finished(repo: Path) -> None:
    s, _ = scripted_run(repo)
    (info,) = query.list_runs(s.repo)
    assert not info.finished and not info.landed
    with Ledger.open(s.repo, s.run) as led:
        led.event("run: land", "main moved", trailers={"Uet-Branch": "main",
                                                        "Uet-Landed": s.integration})
        led.event("run: finish", "2 committed")
    (info,) = query.list_runs(s.repo)
    assert info.finished and not info.landed  # recorded, but main does not hold it
    git(repo, "update-ref", "refs/heads/main", s.integration)
    (info,) = query.list_runs(s.repo)
    assert info.finished and info.landed
    st = query.run_status(s.repo, s.run)
    assert st.finished and st.landed
    events = query.history(s.repo, s.run)
    assert [e.subject for e in events[-2:]] == ["run: land", "run: finish"]
    assert all(e.ws is None and not e.is_transition for e in events[-2:])
    # run-level events do not disturb the workstreams' records
    assert {w.ws: w.state for w in st.workstreams} == EXPECTED_STATES
    assert st.base == s.base and st.target == "main"


def test_landed_means_the_target_holds_the_landed_tip(repo: Path) -> None:
    s, _ = scripted_run(repo)
    with Ledger.open(s.repo, s.run) as led:
        led.event("run: land-intent", "about to land", trailers={
            "Uet-Branch": "main", "Uet-Previous": s.base, "Uet-Landed": s.integration})
    assert not query.run_status(s.repo, s.run).landed  # an intent is not a landing
    git(repo, "update-ref", "refs/heads/main", s.integration)
    with Ledger.open(s.repo, s.run) as led:
        led.event("run: land", "main moved", trailers={"Uet-Branch": "main",
                                                        "Uet-Landed": s.integration})
    assert query.run_status(s.repo, s.run).landed
    later = uet_commit(s.repo, s.integration, {"z.txt": "z"}, "someone", s.run)
    git(repo, "update-ref", "refs/heads/main", later)
    assert query.run_status(s.repo, s.run).landed  # contains it: still landed
    git(repo, "update-ref", "refs/heads/main", s.base)  # reset by hand
    st = query.run_status(s.repo, s.run)
    assert not st.landed and not query.list_runs(s.repo)[0].landed
    assert query.landed_tip(fold(s.repo, s.run)) == ("refs/heads/main", s.integration)


def test_recorded_integration_tip_ignores_the_ref(repo: Path) -> None:
    s, _ = scripted_run(repo)
    assert query.recorded_integration_tip(s.repo, s.run) == s.integration
    git(repo, "update-ref", f"refs/uet/integration/{s.run}", s.base)
    assert query.recorded_integration_tip(s.repo, s.run) == s.integration
    r = Repo.open(repo)
    with Ledger.create(r, base=s.base, target="main", plan={}) as led:
        run = led.run
    assert query.recorded_integration_tip(r, run) == s.base
