"""A writer killed at any point leaves the old state or the new one, and a fresh open works."""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Forked, git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.fsck import fsck
from uet_git.ledger.writer import Ledger

RUN = "20261125-101502-3f2a"

def writer(path: Path, run: str, ops: list[dict]) -> None:
    """A writer process (run in a forked child): opens the run and records each op; ops may
    start a fresh workstream (`"loop": N` runs N workstreams through created -> validated ->
    queued)."""
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base
    with Ledger.open(repo, run) as ledger:
        print("open", flush=True)
        for op in ops:
            if "loop" in op:
                for i in range(op["loop"]):
                    ws = f"{op['prefix']}k{i}"
                    tree = objects.build_tree(repo, base, {ws: ws.encode()})
                    patch = objects.make_commit(repo, tree, [base], ws)
                    ledger.record(ws, "created", attempt=1, patch=patch,
                                  evidence={"stdout": b"x" * 5000})
                    ledger.record(ws, "validated", attempt=1)
                    ledger.record(ws, "queued", attempt=1)
                    if i == 0:
                        print("first", flush=True)
                continue
            op = dict(op)
            ev = {k: v.encode() for k, v in op.pop("evidence", {}).items()}
            ledger.record(op.pop("ws"), op.pop("to"), evidence=ev, **op)
    print("done", flush=True)


def start_writer(path: Path, ops: list[dict], crash: str | None = None) -> Forked:
    return Forked(lambda: writer(path, RUN, ops),
                  env={"UET_LEDGER_CRASH": crash} if crash else None)


def run_writer(path: Path, ops: list[dict], crash: str | None = None
               ) -> subprocess.CompletedProcess[str]:
    proc = start_writer(path, ops, crash)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(["writer"], proc.returncode, out, err)


def uet_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    return dict(line.split(" ") for line in out.splitlines() if line)


def ref_locks(path: Path) -> list[Path]:
    return sorted((path / ".git" / "refs").rglob("*.lock"))


def ref_locks_after_git_exits(path: Path) -> list[Path]:
    """The ref locks left once the orphaned ``update-ref`` (its own session) has seen EOF
    and rolled back: it does so after the killed writer is gone, so give it a moment."""
    deadline = time.monotonic() + 5
    while ref_locks(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    return ref_locks(path)


def git_fsck(path: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_consistent(path: Path) -> None:
    repo = Repo.open(path)
    assert fsck(repo, RUN) == []
    git_fsck(path)


@pytest.fixture
def started(tmp_path: Path):
    path = make_repo(tmp_path / "repo")
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    patch = objects.make_commit(repo, objects.build_tree(repo, base, {"p": b"p"}), [base], "p")
    with Ledger.create(repo, base=base, target="main", plan={"ids": ["w1"]}, run_id=RUN) as led:
        led.record("w1", "created", attempt=1, patch=patch)
    return path, repo, base, patch


@pytest.mark.parametrize("point", ["after-objects", "after-prepare"])
def test_crash_before_the_refs_move_keeps_the_old_state(started, point: str) -> None:
    path, _repo, _base, _patch = started
    before = uet_refs(path)
    proc = run_writer(path, [{"ws": "w1", "to": "validated", "attempt": 1,
                              "evidence": {"log": "x"}}], crash=f"{point}:w1")
    assert proc.returncode == 99, proc.stderr
    assert "open" in proc.stdout and "done" not in proc.stdout
    assert uet_refs(path) == before
    assert ref_locks_after_git_exits(path) == []  # git rolled its transaction back on EOF
    assert_consistent(path)
    with Ledger.open(Repo.open(path), RUN) as ledger:
        assert ledger.state("w1").state == "created"
        ledger.record("w1", "validated", attempt=1)
    assert_consistent(path)


def test_crash_right_after_the_commit_keeps_the_new_state(started) -> None:
    path, _repo, _base, _patch = started
    proc = run_writer(path, [{"ws": "w1", "to": "validated", "attempt": 1}],
                      crash="after-commit:w1")
    assert proc.returncode == 99, proc.stderr
    refs = uet_refs(path)
    assert f"refs/uet/validated/{RUN}/w1" in refs and f"refs/uet/created/{RUN}/w1" not in refs
    assert_consistent(path)
    with Ledger.open(Repo.open(path), RUN) as ledger:
        assert ledger.state("w1").state == "validated"


def test_crash_point_names_a_workstream(started) -> None:
    path, _repo, _base, _patch = started
    proc = run_writer(path, [{"ws": "w1", "to": "validated", "attempt": 1},
                             {"ws": "w2", "to": "blocked", "attempt": 1}],
                      crash="after-objects:w2")
    assert proc.returncode == 99
    refs = uet_refs(path)
    assert f"refs/uet/validated/{RUN}/w1" in refs
    assert not any("/w2" in r for r in refs)
    assert_consistent(path)


def test_kill_9_at_random_moments(started) -> None:
    """SIGKILL of the writer (not its git child) at random points of a busy loop."""
    path, _repo, _base, _patch = started
    rng = random.Random(4)
    for round_ in range(4):
        proc = start_writer(path, [{"loop": 400, "prefix": f"r{round_}-"}])
        assert proc.stdout.readline().strip() == "open"
        assert proc.stdout.readline().strip() == "first"
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        proc.close()
        time.sleep(0.05)  # let an orphaned update-ref finish or abort on EOF
        assert_consistent(path)
        with Ledger.open(Repo.open(path), RUN) as ledger:
            states = ledger.states()
            assert states["w1"].state == "created"
            assert all(r.state in ("created", "validated", "queued") for r in states.values())
            assert states[f"r{round_}-k0"].state == "queued"


def test_killed_process_group_mid_commit_is_repaired_on_open(started) -> None:
    """Simulate the worst case of SIGKILL to the whole group (or power loss) during git's
    commit phase: the ledger ref moved, the new state ref is still a lock file and the old
    state ref still exists. Open removes the stale locks and rolls the refs forward."""
    path, repo, _base, patch = started
    with Ledger.open(repo, RUN) as ledger:
        old_tip = ledger.tip
        new_commit = ledger.record("w1", "validated", attempt=1)
    # Rewind to a torn state by hand: created ref back, validated ref as a stale lock.
    refs_dir = path / ".git" / "refs" / "uet"
    (refs_dir / "created" / RUN).mkdir(parents=True, exist_ok=True)
    (refs_dir / "created" / RUN / "w1").write_text(patch + "\n")
    (refs_dir / "validated" / RUN / "w1").rename(refs_dir / "validated" / RUN / "w1.lock")
    (refs_dir / "created" / RUN / "w1.lock").write_text("")
    old = time.time() - 10
    for lock in ref_locks(path):
        os.utime(lock, (old, old))
    assert fsck(repo, RUN) != []
    with Ledger.open(Repo.open(path), RUN) as ledger:
        assert ledger.state("w1").state == "validated"
        assert ledger.tip != new_commit  # a `run: repair` event was recorded
        ledger.record("w1", "queued", attempt=1)
    assert ref_locks(path) == []
    subjects = git(path, "log", "--format=%s", f"refs/uet/ledger/{RUN}").splitlines()
    assert subjects[:3] == ["w1: validated -> queued", "run: repair", "w1: created -> validated"]
    body = git(path, "log", "-1", "--format=%b", f"refs/uet/ledger/{RUN}~1")
    assert "stale ref locks" in body and f"refs/uet/created/{RUN}/w1" in body
    assert old_tip != new_commit
    assert_consistent(path)


def test_torn_rollback_when_the_ledger_did_not_move(started) -> None:
    """The other torn shape: state refs moved but the ledger ref did not. Open rolls the
    refs back to what the ledger says."""
    path, _repo, _base, patch = started
    refs_dir = path / ".git" / "refs" / "uet"
    (refs_dir / "validated" / RUN).mkdir(parents=True)
    (refs_dir / "validated" / RUN / "w1").write_text(patch + "\n")
    (refs_dir / "ledger" / f"{RUN}.lock").write_text("0" * 40 + "\n")
    old = time.time() - 10
    for lock in ref_locks(path):
        os.utime(lock, (old, old))
    with Ledger.open(Repo.open(path), RUN) as ledger:
        assert ledger.state("w1").state == "created"
    refs = uet_refs(path)
    assert f"refs/uet/validated/{RUN}/w1" not in refs and f"refs/uet/created/{RUN}/w1" in refs
    assert_consistent(path)


def test_disagreeing_refs_without_locks_need_an_explicit_repair(started) -> None:
    path, repo, _base, patch = started
    git(path, "update-ref", f"refs/uet/queued/{RUN}/w1", patch)
    with pytest.raises(Exception, match="disagree with the ledger"):
        Ledger.open(repo, RUN)
    with Ledger.open(repo, RUN, repair=True) as ledger:
        assert ledger.state("w1").state == "created"
    assert f"refs/uet/queued/{RUN}/w1" not in uet_refs(path)
    assert_consistent(path)


def test_interrupt_before_commit_releases_locks_and_keeps_the_old_state(started) -> None:
    path, repo, _base, _patch = started
    with Ledger.open(repo, RUN) as ledger:
        before = uet_refs(path)

        def interrupt() -> None:
            raise KeyboardInterrupt

        ledger._updater.before_commit = interrupt
        with pytest.raises(KeyboardInterrupt):
            ledger.record("w1", "validated", attempt=1)
        assert uet_refs(path) == before and ref_locks(path) == []
        assert ledger.state("w1").state == "created"
        ledger._updater.before_commit = None
        ledger.record("w1", "validated", attempt=1)  # a fresh git process takes over
    assert_consistent(path)


def test_interrupt_after_commit_was_sent_keeps_the_cache_true(started) -> None:
    path, repo, _base, _patch = started
    with Ledger.open(repo, RUN) as ledger:
        def send_commit_then_interrupt() -> None:
            proc = ledger._updater._proc
            assert proc is not None and proc.stdin is not None
            proc.stdin.write(b"commit\0")
            proc.stdin.flush()
            raise KeyboardInterrupt

        ledger._updater.before_commit = send_commit_then_interrupt
        with pytest.raises(KeyboardInterrupt):
            ledger.record("w1", "validated", attempt=1)
        ledger._updater.before_commit = None
        assert f"refs/uet/validated/{RUN}/w1" in uet_refs(path)
        assert ledger.state("w1").state == "validated"  # the cache followed git
        ledger.record("w1", "queued", attempt=1)
    assert ref_locks(path) == []
    assert_consistent(path)
