"""Chained and group-committed ledger transactions: one ref transaction for several ledger
commits, and kill -9 inside one leaves the state before it or after it (then `uet resume`
lands each patch once and both fscks are clean)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import Forked, git, make_repo
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    landed_workstreams,
    last_run,
    ledger_subjects,
    run,
    run_ok,
    setup_repo,
    states,
)
from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.expected import expected_refs
from uet_git.ledger.fsck import fsck
from uet_git.ledger.groupcommit import ordered
from uet_git.ledger.log import read_ledger
from uet_git.ledger.writer import Ledger, Step

RUN = "20261201-150000-ba7c"


def _patch(repo: Repo, name: str) -> str:
    base = repo.rev_parse("HEAD")
    return objects.make_commit(repo, objects.build_tree(repo, base, {name: name.encode()}),
                               [base], name)


def _uet_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    return dict(line.split(" ") for line in out.splitlines() if line)


@pytest.fixture
def ledger(tmp_path: Path):
    path = make_repo(tmp_path / "repo")
    repo = Repo.open(path)
    with Ledger.create(repo, base=repo.rev_parse("HEAD"), target="main",
                       plan={"ids": ["w1", "w2"]}, run_id=RUN) as led:
        yield led


def test_a_chain_is_one_commit_per_step_and_only_its_last_state_has_a_ref(ledger: Ledger):
    repo, start = ledger.repo, ledger.tip
    patch = _patch(repo, "w1")
    oids = ledger.record_chain("w1", [Step("created", patch=patch, evidence={"log": b"x"}),
                                      Step("validated", summary="ok"), Step("queued")],
                               attempt=1)
    assert len(oids) == 3 and oids[-1] == ledger.tip
    # Each step is its own ledger commit, the parent of the next, with its own trailers.
    log = read_ledger(repo, RUN)
    moves = [(e.trailers["Uet-From"], e.trailers["Uet-To"]) for e in log.transitions()]
    assert moves == [("none", "created"), ("created", "validated"), ("validated", "queued")]
    assert [e.oid for e in log.transitions()] == oids
    assert git(repo.workdir, "rev-parse", f"{oids[1]}^") == oids[0]
    assert git(repo.workdir, "rev-parse", f"{oids[0]}^") == start
    refs = _uet_refs(repo.workdir)
    assert refs[f"refs/uet/queued/{RUN}/w1"] == patch
    assert refs[f"refs/uet/patches/{RUN}/w1/1"] == patch
    assert not any(f"/created/{RUN}" in r or f"/validated/{RUN}" in r for r in refs)
    # The refs are exactly what replaying the history expects (repair and fsck agree).
    assert {k: v for k, v in refs.items() if RUN in k} == expected_refs(log)
    assert fsck(repo, RUN) == []
    assert ledger.state("w1").state == "queued"


def test_an_illegal_step_records_none_of_its_chain(ledger: Ledger):
    tip, patch = ledger.tip, _patch(ledger.repo, "w1")
    with pytest.raises(UetError):
        ledger.record_chain("w1", [Step("created", patch=patch), Step("committed")],
                            attempt=1)
    assert ledger.tip == tip and ledger.state("w1") is None
    assert f"refs/uet/patches/{RUN}/w1/1" not in _uet_refs(ledger.repo.workdir)
    ledger.record("w1", "created", attempt=1, patch=patch)  # the writer goes on
    assert ledger.state("w1").state == "created"


def test_queued_requests_of_several_workstreams_share_one_transaction(ledger: Ledger):
    repo = ledger.repo
    p1, p2 = _patch(repo, "w1"), _patch(repo, "w2")
    first = ledger.submit("w1", [Step("created", patch=p1)], attempt=1)
    bad = ledger.submit("w2", [Step("queued")], attempt=1)  # illegal: fails alone
    ledger.record_chain("w2", [Step("created", patch=p2), Step("validated")], attempt=1)
    assert first.finished and first.value()[0] != ledger.tip
    with pytest.raises(UetError):
        bad.value()
    # One transaction moved the ledger ref over both workstreams' commits, in order.
    subjects = git(repo.workdir, "log", "--format=%s", f"refs/uet/ledger/{RUN}").splitlines()
    assert subjects[:3] == ["w2: created -> validated", "w2: none -> created",
                            "w1: none -> created"]
    assert ledger.state("w1").state == "created" and ledger.state("w2").state == "validated"
    assert fsck(repo, RUN) == []


def test_the_integrators_transitions_go_ahead_of_the_workers_but_never_ahead_of_their_own():
    def req(ws: str, first: bool):
        return type("R", (), {"ws": ws, "first": first})()

    q = [req("a", False), req("b", True), req("a", True), req("c", False), req("c", True)]
    order = [(r.ws, r.first) for r in ordered(q)]
    assert order == [("b", True), ("a", False), ("a", True), ("c", False), ("c", True)]


def test_a_transition_queued_without_waiting_is_written_and_read_back(ledger: Ledger):
    patch = _patch(ledger.repo, "w1")
    ledger.record("w1", "created", attempt=1, patch=patch)
    seen: list[list[str]] = []
    done = threading.Event()

    def cb(oids: list[str]) -> None:
        seen.append(oids)
        done.set()

    ledger.submit("w1", [Step("validated")], attempt=1, done=cb)
    # A reader of that workstream waits for it; the background thread calls back.
    assert ledger.state("w1").state == "validated"
    assert done.wait(5) and seen[0] == [ledger.tip]


def test_a_failure_of_a_transition_not_waited_for_is_raised_by_the_next_flush(ledger: Ledger):
    ledger.submit("w1", [Step("queued")], attempt=1, done=lambda oids: None)
    with pytest.raises(UetError, match="none -> queued"):
        ledger.flush()
    ledger.flush()  # raised once


# -- kill -9 inside a group (a writer process) ----------------------------------------------

def _writer(path: Path, run: str) -> None:
    """A writer process (forked): a group of w1's and w2's chains in one transaction."""
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")

    def patch(name: str) -> str:
        return objects.make_commit(repo, objects.build_tree(repo, base, {name: b"x"}), [base],
                                   name)

    with Ledger.open(repo, run) as ledger:
        ledger.submit("w1", [Step("created", patch=patch("w1")), Step("validated")], attempt=1)
        ledger.record_chain("w2", [Step("created", patch=patch("w2")), Step("validated"),
                                   Step("queued")], attempt=1)
    print("done", flush=True)


@pytest.mark.parametrize(("crash", "recorded"), [
    ("after-objects:w2@queued", False), ("after-prepare:w2", False),
    ("after-prepare:w1@validated", False), ("after-commit:w1", True)])
def test_kill_inside_a_group_leaves_all_of_it_or_none(tmp_path: Path, crash: str,
                                                      recorded: bool):
    path = make_repo(tmp_path / "repo")
    repo = Repo.open(path)
    Ledger.create(repo, base=repo.rev_parse("HEAD"), target="main",
                  plan={"ids": ["w1", "w2"]}, run_id=RUN).close()
    before = _uet_refs(path)
    child = Forked(lambda: _writer(path, RUN), env={"UET_LEDGER_CRASH": crash})
    out, err = child.communicate(timeout=60)
    assert child.returncode == 99, out + err
    with Ledger.open(repo, RUN) as led:  # opens clean: no stale lock, refs agree
        got = {ws: (r.state if (r := led.state(ws)) else None) for ws in ("w1", "w2")}
    if recorded:
        assert got == {"w1": "validated", "w2": "queued"}
    else:
        assert got == {"w1": None, "w2": None} and _uet_refs(path) == before
    assert fsck(repo, RUN) == []
    check = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# -- kill -9 of `uet run` inside a chained transaction, then `uet resume` -------------------

def _repo(path: Path) -> Path:
    return setup_repo(path, config=NO_SANDBOX, workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": ["test -f a.txt"]},
        "b": {"depends_on": ["a"], "command": "echo b > b.txt"},
        "c": {"command": "echo c > c.txt"},
    })


@pytest.mark.parametrize("point", [
    "after-prepare:a@validated",  # created -> validated of a worker
    "after-prepare:b@queued",  # created -> validated -> queued (no acceptance)
    "after-objects:a@verified",  # applied -> verified -> committed of the queue
    "after-prepare:a@committed",
    "after-commit:c@committed",
])
def test_kill_of_uet_run_inside_a_chain_then_resume(tmp_path: Path, point: str):
    repo = _repo(tmp_path / "r")
    proc = run(repo, "run", "--jobs", "2", env={"UET_LEDGER_CRASH": point})
    assert proc.returncode == 99, proc.stdout + proc.stderr
    run_id = last_run(repo)
    run_ok(repo, "resume")
    assert states(repo, run_id) == {"a": "committed", "b": "committed", "c": "committed"}
    landed = landed_workstreams(repo)
    assert sorted(landed) == ["a", "b", "c"] and landed.index("a") < landed.index("b")
    subjects = ledger_subjects(repo, run_id)
    for ws in ("a", "b", "c"):  # each transition recorded once
        mine = [s for s in subjects if s.startswith(f"{ws}: ")]
        assert len(mine) == len(set(mine)), mine
        assert sum(s.endswith("-> committed") for s in mine) == 1
    fsck_clean(repo)
