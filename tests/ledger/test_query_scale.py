"""`uet status` from the state refs and the kept fold of the ledger (ledger/fold.py), checked
against folding the whole ledger as a reader did before, on a scripted run of a few hundred
workstreams (bench/b4_ledger.py) and on runs the real writer continues."""

from __future__ import annotations

import json
from pathlib import Path

from bench.b4_ledger import QUARANTINE_EVERY, build
from tests.conftest import git, uet
from tests.e2e.helpers import last_run, run_ok, setup_repo
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.gitrepo import Repo
from uet_git.ledger import fold, query
from uet_git.ledger.log import PENDING, Event, read_ledger, read_plan, ws_record

N = 200


def whole_fold(repo: Repo, run: str) -> dict[str, tuple[object, ...]]:
    """What every workstream's record was when a reader folded the whole ledger: its
    transitions through ``ws_record``, the state from its ref."""
    log = read_ledger(repo, run)
    refs = query.state_refs_of(query.run_refs(repo, run), run)
    by_ws: dict[str, list[Event]] = {ws: [] for ws in refs}
    for e in log.transitions():
        by_ws.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
    out: dict[str, tuple[object, ...]] = {}
    for ws, events in by_ws.items():
        rec = ws_record(ws, events)
        state, ref, target = sorted(refs[ws])[0] if ws in refs else (rec.state, None, None)
        out[ws] = (state, rec.attempt, rec.reason, rec.patch, rec.candidate, rec.started,
                   rec.updated, rec.duration, ref, target, ws not in refs and
                   rec.state != PENDING, rec.changes_checks, rec.blocked_by)
    return out


def shown(st: query.RunStatus) -> dict[str, tuple[object, ...]]:
    return {w.ws: (w.state, w.attempt, w.reason, w.patch, w.candidate, w.started, w.updated,
                   w.duration, w.ref, w.target, w.collected, w.changes_checks, w.blocked_by)
            for w in st.workstreams}


def test_status_of_a_scripted_run_is_the_whole_fold(repo: Path) -> None:
    run = build(repo, N)
    r = Repo.open(repo)
    st = query.run_status(r, run)
    assert shown(st) == whole_fold(r, run)
    log = read_ledger(r, run)
    assert [w.ws for w in st.workstreams] == [n["id"] for n in read_plan(r, log)["nodes"]]
    bad = N // QUARANTINE_EVERY
    assert st.counts == {"committed": N - bad, "quarantined": bad}
    assert (st.base, st.target, st.started, st.updated, st.finished) == \
        (log.base, log.target, log.started, log.updated, True)
    # The fold was kept: the next reader takes it as it is, and shows the same.
    assert fold.cache_path(r, run).is_file()
    first = uet("status", run, "--json", cwd=repo).stdout
    assert json.loads(first)["workstreams"] == [w.to_dict() | {"running": None}
                                                for w in st.workstreams]
    assert uet("status", run, "--json", cwd=repo).stdout == first
    fold.cache_path(r, run).unlink()
    assert uet("status", run, "--json", cwd=repo).stdout == first
    assert uet("status", run, cwd=repo).stdout.splitlines()[-1] == \
        f"{N} workstreams: {N - bad} committed, {bad} quarantined"


def test_a_continued_ledger_is_folded_from_the_kept_fold_on(repo: Path) -> None:
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    query.run_status(s.repo, s.run)
    path = fold.cache_path(s.repo, s.run)
    kept = fold.load(s.repo, s.run)
    assert kept is not None and kept.tip == led.tip
    # Mark what the kept fold says of `a`: a reader that continues it shows the mark, one
    # that folded everything again would not.
    kept.records["a"].reason = "kept-mark"
    fold.save(s.repo, kept)
    pb2 = uet_commit(s.repo, s.base, {"b.txt": "b2\n"}, "b", s.run)
    led.record("b", "created", attempt=2, patch=pb2)
    led.record("b", "validated", attempt=2)
    led.record("f", "quarantined", attempt=1, reason="tool-failed")
    led.close()
    st = query.run_status(s.repo, s.run)
    recs = {w.ws: w for w in st.workstreams}
    assert recs["a"].reason == "kept-mark"
    assert (recs["b"].state, recs["b"].attempt, recs["b"].patch, recs["b"].reason) == \
        ("validated", 2, pb2, None)
    assert recs["f"].reason == "tool-failed"
    assert json.loads(path.read_text())["count"] == len(read_ledger(s.repo, s.run).events)
    path.unlink()  # folded from nothing: the real record of `a`, the rest the same
    again = shown(query.run_status(s.repo, s.run))
    assert again == whole_fold(s.repo, s.run)
    assert {ws: v for ws, v in again.items() if ws != "a"} == \
        {ws: v for ws, v in shown(st).items() if ws != "a"}


def test_a_kept_fold_the_ledger_does_not_continue_is_not_used(repo: Path) -> None:
    s, _ = scripted_run(repo)
    query.run_status(s.repo, s.run)
    path = fold.cache_path(s.repo, s.run)
    kept = fold.load(s.repo, s.run)
    assert kept is not None
    # A fold at a commit that is not in the ledger's history (the base), claiming everything.
    kept.tip, kept.count, kept.records, kept.committed = s.base, 1, {}, {}
    fold.save(s.repo, kept)
    assert fold.load(s.repo, s.run) is not None
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)
    path.write_text("{not json")
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)


def test_a_read_only_cache_dir_only_costs_a_fold(repo: Path) -> None:
    s, _ = scripted_run(repo)
    cache = fold.cache_path(s.repo, s.run).parent
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the directory would be")
    assert shown(query.run_status(s.repo, s.run)) == whole_fold(s.repo, s.run)
    assert git(repo, "status", "--porcelain") == ""


def test_a_finished_run_leaves_its_fold_for_the_first_status(tmp_path: Path) -> None:
    path = setup_repo(tmp_path / "repo", workstreams={
        "a": {"tool": "shell", "command": "echo a > a.txt"},
        "b": {"tool": "shell", "command": "exit 3"}})
    run_ok(path, "run", "--land", "never", code=1)
    run = last_run(path)
    r = Repo.open(path)
    kept = fold.load(r, run)
    assert kept is not None and kept.tip == r.read_ref(f"refs/uet/ledger/{run}")
    assert kept.finished and {ws: rec.state for ws, rec in kept.records.items()} == \
        {"a": "committed", "b": "quarantined"}
