"""The writer under git's own housekeeping running at the same time, for real: a `git gc
--prune=now` loop, a `git pack-refs --all` loop, a tool deleting every ref under refs/uet/."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.repair import repair
from uet_git.ledger.writer import Ledger

RECORDS = 200  # transitions recorded while the housekeeping loop runs, at most
# The pack-refs loop's test records this many by default (each a few ms, pack-refs rounds by
# the hundred meanwhile); all RECORDS with UET_HOUSEKEEPING_SOAK=1.
SOAK = os.environ.get("UET_HOUSEKEEPING_SOAK", "") not in ("", "0")
PACK_REFS_RECORDS = RECORDS if SOAK else 60


@contextmanager
def looping(path: Path, command: str) -> Iterator[Path]:
    """``command`` run over and over in the background (its own process group) until the
    block ends; yields a file that counts the rounds.

    The loop is asked to stop and its last round runs to the end, as a user's housekeeping
    would: a ``git gc`` killed mid-round leaves its ``gc.pid`` behind, which the writer takes
    for a pruning gc still running and waits out for minutes (what this file tests is the
    housekeeping running, not a killed gc)."""
    count = path.parent / "rounds"
    stop = path.parent / "stop-looping"
    count.write_text("")
    proc = subprocess.Popen(
        ["bash", "-c",
         f"while [ ! -e {stop} ]; do {command} >/dev/null 2>&1; echo >> {count}; done"],
        cwd=path, start_new_session=True)
    try:
        yield count
    finally:
        stop.touch()
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def rounds(count: Path) -> int:
    return len(count.read_text().splitlines())


def fsck_strict(path: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def patches(repo: Repo, base: str, n: int, start: int = 0) -> list[str]:
    """``n`` patch commits (of workstreams ``w<start>``...), kept alive by refs outside
    refs/uet/ (in a real run the worktree's HEAD holds them): what the writer must protect is
    its own objects."""
    out = []
    for i in range(start, start + n):
        tree = objects.build_tree(repo, base, {f"w{i}.txt": f"{i}\n".encode()})
        msg = f"w{i}: change\n\nUet-Workstream: w{i}\n"
        out.append(objects.make_commit(repo, tree, [base], msg))
    git(repo.workdir, "update-ref", "--stdin",
        input="".join(f"create refs/keep/w{i} {p}\n" for i, p in enumerate(out, start)))
    return out


def enough_patches(started: tuple[Path, Repo, str, list[str]]) -> list[str]:
    """The patches of ``started`` and more: one per workstream ``record_many`` may move."""
    _path, repo, base, ps = started
    return ps + patches(repo, base, RECORDS // 4 + 1 - len(ps), start=len(ps))


def record_many(led: Ledger, ps: list[str], base: str,
                enough: Callable[[int], bool] | None = None) -> int:
    """Up to ``RECORDS`` transitions: each workstream created -> validated -> queued ->
    quarantined, each move with fresh evidence (new blobs and trees every time); stops early
    once ``enough(transitions so far)`` says so. Returns the number of workstreams moved."""
    moves = [("created", None), ("validated", None), ("queued", None),
             ("quarantined", "verify-failed")]
    done = 0
    i = 0
    while done < RECORDS and not (enough is not None and enough(done)):
        ws = f"w{i}"
        for to, reason in moves:
            log = f"{ws} {to} {os.urandom(8).hex()}\n".encode()
            led.record(ws, to, attempt=1, patch=ps[i] if to == "created" else None,
                       reason=reason, evidence={"log": log})
            done += 1
        i += 1
    return i


@pytest.fixture
def started(tmp_path: Path) -> tuple[Path, Repo, str, list[str]]:
    path = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base
    return path, repo, base, patches(repo, base, 2)  # the loops' tests add theirs


def every_ledger_commit_readable(path: Path, run: str, transitions: int = RECORDS) -> None:
    oids = git(path, "rev-list", f"refs/uet/ledger/{run}").split()
    assert len(oids) > transitions
    # Each commit's tree and blobs are there: `git ls-tree -r` reads every tree and
    # `cat-file --batch-check` every blob.
    tip_blobs = git(path, "ls-tree", "-r", "--format=%(objectname)", f"refs/uet/ledger/{run}")
    out = git(path, "cat-file", "--batch-check", input=tip_blobs + "\n")
    assert "missing" not in out


def test_records_survive_a_gc_prune_now_loop(started) -> None:
    path, repo, base, _ = started
    ps = enough_patches(started)
    led = Ledger.create(repo, base=base, target="main", plan={})
    run = led.run
    try:
        with looping(path, "git gc --prune=now --quiet") as count:
            # Each transaction waits out a pruning gc that may have walked the refs before
            # they moved, so a gc loop costs a whole gc per transition: record until two
            # whole prunes ran meanwhile (at least 24 transitions), not a fixed 200.
            n = record_many(led, ps, base, lambda done: done >= 24 and rounds(count) >= 2)
            assert rounds(count) >= 1
        # The prune that was running when the loop stopped may have taken the last
        # transactions' objects: the next transaction puts them back.
        led.event("run: finish", "done")
    finally:
        led.close()
    fsck_strict(path)
    every_ledger_commit_readable(path, run, 4 * n)
    fresh = Repo.open(path)
    assert fsck(fresh, run) == []
    st = query.run_status(fresh, run)
    assert st.finished and st.counts == {"quarantined": n}
    assert query.evidence(fresh, run, "w0", 1, "log").startswith(b"w0 quarantined")


def test_records_survive_a_pack_refs_loop(started) -> None:
    path, repo, base, _ = started
    ps = enough_patches(started)
    led = Ledger.create(repo, base=base, target="main", plan={})
    run = led.run
    with looping(path, "git pack-refs --all") as count:
        try:
            record_many(led, ps, base, lambda done: done >= PACK_REFS_RECORDS)
            led.event("run: finish", "done")
        finally:
            led.close()
        assert rounds(count) >= 1
    assert query.read_ledger(repo, run).finished
    assert fsck(Repo.open(path), run) == []
    fsck_strict(path)


def test_a_tool_deleting_every_uet_ref_is_undone_by_the_writer(started) -> None:
    path, repo, base, ps = started
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0])
        led.record("w1", "created", attempt=1, patch=ps[1])
        led.record("w1", "validated", attempt=1)
        before = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
        names = git(path, "for-each-ref", "--format=%(refname)", "refs/uet/").split()
        git(path, "update-ref", "--stdin", input="".join(f"delete {n}\n" for n in names))
        assert git(path, "for-each-ref", "refs/uet/") == ""
        led.record("w0", "validated", attempt=1)  # notices, restores, records
        subjects = git(path, "log", "--format=%s", f"refs/uet/ledger/{run}").splitlines()
        assert subjects[:2] == ["run: repair", "w0: created -> validated"]
        body = git(path, "log", "-1", "--format=%b", f"refs/uet/ledger/{run}")
        assert "deleted behind the writer's back" in body and f"refs/uet/created/{run}/w1" \
            not in body and f"refs/uet/validated/{run}/w1" in body
        led.event("run: finish", "done")
    after = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    kept = {ln.split()[0] for ln in before.splitlines()} - {f"refs/uet/ledger/{run}",
                                                            f"refs/uet/created/{run}/w0"}
    assert kept <= {ln.split()[0] for ln in after.splitlines()}
    assert fsck(Repo.open(path), run) == []
    fsck_strict(path)


def test_a_lost_race_that_is_not_a_deletion_is_still_an_error(started) -> None:
    path, repo, base, ps = started
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        led.record("w0", "created", attempt=1, patch=ps[0])
        git(path, "update-ref", f"refs/uet/created/{led.run}/w0", ps[1])
        with pytest.raises(UetError, match="lost a race and was not recorded"):
            led.record("w0", "validated", attempt=1)
        assert led.state("w0").state == "created"


def test_a_reader_meeting_a_pruned_ledger_commit_says_which_run_and_ref(started) -> None:
    path, repo, base, ps = started
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0])
        tip = led.tip
    obj = path / ".git" / "objects" / tip[:2] / tip[2:]
    obj.unlink()
    with pytest.raises(UetError) as info:
        query.run_status(Repo.open(path), run)
    msg = str(info.value)
    assert info.value.exit_code == 1 and "\n" not in msg
    assert msg.startswith(f"run {run}: refs/uet/ledger/{run}:") and "missing" in msg
    assert f"uet fsck --repair {run}" in msg


def prune_once_after_writing(monkeypatch: pytest.MonkeyPatch, path: Path,
                             subject: str) -> list[str]:
    """Fault injection: the first commit written with ``subject`` loses its object file right
    after it is written, as a concurrent ``git gc --prune=now`` that began its walk before
    the ref existed would do it. Returns the commits taken that way."""
    taken: list[str] = []
    make_commit = objects.make_commit

    def make_then_prune(*args: object, **kwargs: object) -> str:
        oid = make_commit(*args, **kwargs)  # type: ignore[arg-type]
        if not taken and str(args[3]).startswith(subject):
            taken.append(oid)
            (path / ".git" / "objects" / oid[:2] / oid[2:]).unlink()
        return oid

    monkeypatch.setattr(objects, "make_commit", make_then_prune)
    return taken


def test_run_start_survives_a_prune_of_its_root_commit(started, monkeypatch) -> None:
    path, repo, base, ps = started
    taken = prune_once_after_writing(monkeypatch, path, "run: start")
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0])
    assert taken and git(path, "rev-list", "--max-parents=0", f"refs/uet/ledger/{run}") \
        == taken[0]
    assert fsck(Repo.open(path), run) == []
    fsck_strict(path)


def test_repair_survives_a_prune_of_its_commit(started, monkeypatch) -> None:
    path, repo, base, ps = started
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0])
    git(path, "update-ref", f"refs/uet/integration/{run}", ps[1])  # forged
    taken = prune_once_after_writing(monkeypatch, path, "run: repair")
    fixes = repair(Repo.open(path), run)
    assert fixes and taken
    assert git(path, "rev-parse", f"refs/uet/ledger/{run}") == taken[0]
    assert git(path, "rev-parse", f"refs/uet/integration/{run}") == base
    assert fsck(Repo.open(path), run) == []
    fsck_strict(path)
