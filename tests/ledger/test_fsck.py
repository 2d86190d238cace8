"""fsck on a clean scripted run, then on each injected violation: one line each."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Forked, git, uet
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.gitrepo import Repo, objects
from uet_git.ledger.fsck import fsck
from uet_git.ledger.writer import Ledger


def test_clean_run_and_git_fsck_strict(repo: Path) -> None:
    s, _ = scripted_run(repo)
    assert fsck(s.repo) == []
    assert fsck(s.repo, s.run) == []
    git(repo, "fsck", "--strict", "--no-dangling")
    proc = uet("fsck", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "clean" in proc.stdout


def test_deleted_state_ref(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "update-ref", "-d", f"refs/uet/quarantined/{s.run}/b")
    problems = fsck(s.repo, s.run)
    assert len(problems) == 1, problems
    assert f"{s.run}: b: no state ref" in problems[0]
    proc = uet("fsck", s.run, cwd=repo)
    assert proc.returncode == 1
    assert proc.stdout.strip().splitlines() == problems


def test_second_state_ref(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "update-ref", f"refs/uet/queued/{s.run}/b", s.patches["b"])
    problems = fsck(s.repo)
    assert len(problems) == 1, problems
    assert "b: 2 state refs" in problems[0]
    assert f"refs/uet/queued/{s.run}/b" in problems[0]


def test_state_ref_disagreeing_with_ledger(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "update-ref", "-d", f"refs/uet/dropped/{s.run}/e")
    git(repo, "update-ref", f"refs/uet/quarantined/{s.run}/e", s.patches["e"])
    problems = fsck(s.repo)
    assert len(problems) == 1, problems
    assert "says quarantined" in problems[0] and "says dropped" in problems[0]


def test_state_ref_pointing_elsewhere(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "update-ref", f"refs/uet/committed/{s.run}/c", s.patches["a"])
    problems = fsck(s.repo)
    assert len(problems) == 1, problems
    assert f"refs/uet/committed/{s.run}/c points to {s.patches['a'][:12]}" in problems[0]


def test_integration_at_a_wrong_commit(repo: Path) -> None:
    s, _ = scripted_run(repo)
    iref = f"refs/uet/integration/{s.run}"
    # a foreign commit on top of the committed patches
    stray = uet_commit(s.repo, s.integration, {"z.txt": "z"}, "zz", s.run)
    git(repo, "update-ref", iref, stray)
    problems = fsck(s.repo)
    assert len(problems) == 1, problems
    assert f"commit {stray[:12]} is zz, which is not in the ledger" in problems[0]
    # back to a: c is committed but missing
    git(repo, "update-ref", iref, s.candidates["a"])
    problems = fsck(s.repo)
    assert problems == [f"{s.run}: c is committed but not on {iref}"]
    # the quarantined patch b instead of c
    bad = uet_commit(s.repo, s.candidates["a"], {"b.txt": "b"}, "b", s.run)
    git(repo, "update-ref", iref, bad)
    problems = fsck(s.repo)
    assert len(problems) == 2, problems
    assert any("is b, which is quarantined, not committed" in p for p in problems)
    # not descending from the base at all
    orphan = git(repo, "commit-tree", "-m", "orphan", git(repo, "rev-parse", "HEAD^{tree}"))
    git(repo, "update-ref", iref, orphan)
    problems = fsck(s.repo)
    assert len(problems) == 1 and "does not descend first-parent from the base" in problems[0]


def test_dependency_order(repo: Path) -> None:
    r = Repo.open(repo)
    base = r.rev_parse("HEAD")
    assert base
    plan = {"nodes": [{"id": "a", "depends_on": []}, {"id": "b", "depends_on": ["a"]}]}
    with Ledger.create(r, base=base, target="main", plan=plan) as led:
        tip = base
        for ws in ("b", "a"):  # wrong order: b lands before its dependency
            p = uet_commit(r, base, {f"{ws}.txt": ws}, ws, led.run)
            led.record(ws, "created", attempt=1, patch=p)
            led.record(ws, "validated", attempt=1)
            led.record(ws, "queued", attempt=1)
            cand = uet_commit(r, tip, {f"{ws}.txt": ws}, ws, led.run)
            led.record(ws, "applied", attempt=1, candidate=cand)
            led.record(ws, "verified", attempt=1)
            led.record(ws, "committed", attempt=1, integration=cand)
            tip = cand
        run = led.run
    problems = fsck(r, run)
    assert problems == [f"{run}: refs/uet/integration/{run}: b comes before its dependency a"]


def test_missing_evidence_object(repo: Path) -> None:
    s, _ = scripted_run(repo)
    blob = git(repo, "rev-parse", f"refs/uet/ledger/{s.run}:evidence/b/1/acceptance.log")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    problems = fsck(s.repo)
    assert problems == [f"{s.run}: ledger tip tree: evidence/b/1/acceptance.log is missing"]


def test_patch_ref_moved_and_orphan_refs(repo: Path) -> None:
    s, _ = scripted_run(repo)
    git(repo, "update-ref", f"refs/uet/patches/{s.run}/b/1", s.patches["a"])
    problems = fsck(s.repo)
    assert len(problems) == 1 and f"patches/{s.run}/b/1 points to" in problems[0], problems
    git(repo, "update-ref", f"refs/uet/patches/{s.run}/b/1", s.patches["b"])
    git(repo, "update-ref", "refs/uet/quarantined/20200101-000000-abcd/x", s.base)
    git(repo, "update-ref", "refs/uet/bogus/thing", s.base)
    problems = fsck(s.repo)
    assert len(problems) == 2, problems
    assert any("20200101-000000-abcd" in p and "without a ledger" in p for p in problems)
    assert any("refs/uet/bogus/thing" in p for p in problems)
    assert fsck(s.repo, s.run) == []  # one run only: the others are not its business


def test_crash_before_refs_leaves_fsck_clean(repo: Path) -> None:
    """Objects written, refs not moved (the writer's crash point): the old state, fsck clean."""
    s, _ = scripted_run(repo)

    def record() -> None:
        led = Ledger.open(Repo.open(repo), s.run)
        led.record("b", "dropped", attempt=1)

    proc = Forked(record, env={"UET_LEDGER_CRASH": "after-objects"})
    _, err = proc.communicate()
    assert proc.returncode == 99, err
    assert git(repo, "rev-parse", f"refs/uet/quarantined/{s.run}/b") == s.patches["b"]
    assert fsck(s.repo) == []


def test_missing_patch_object_is_one_line(repo: Path) -> None:
    s, _ = scripted_run(repo)
    oid = s.patches["e"]  # dropped: only its refs and the ledger's trailers name it
    (repo / ".git" / "objects" / oid[:2] / oid[2:]).unlink()
    problems = fsck(Repo.open(repo))  # a fresh handle: libgit2 caches what it has read
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{s.run}: object {oid} is missing (named by refs/uet/")


def test_fsck_of_a_live_run_reports_nothing_transient(repo: Path) -> None:
    """Readers never lock: fsck while the writer moves refs sees no torn state."""
    import threading
    import time

    r = Repo.open(repo)
    base = r.rev_parse("HEAD")
    assert base
    led = Ledger.create(r, base=base, target="main", plan={})
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(20):
                if stop.is_set():
                    return
                ws = f"w{i}"
                p = uet_commit(r, base, {f"{ws}.txt": ws}, ws, led.run)
                for to in ("created", "validated", "queued"):
                    led.record(ws, to, attempt=1, patch=p if to == "created" else None)
                    time.sleep(0.01)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    try:
        reader = Repo.open(repo)
        checks = 0
        while t.is_alive() and checks < 15:
            assert fsck(reader, led.run) == []
            checks += 1
        assert checks >= 3
    finally:
        stop.set()
        t.join()
        led.close()
    assert not errors
    assert fsck(Repo.open(repo)) == []


def test_history_itself_is_checked(repo: Path) -> None:
    """A ledger commit appended by hand with a wrong from-state, an illegal move and an
    attempt going backwards: each reported."""
    s, _ = scripted_run(repo)
    tip = git(repo, "rev-parse", f"refs/uet/ledger/{s.run}")
    tree = objects.commit_tree(s.repo, tip)

    def append(parent: str, ws: str, frm: str, to: str, attempt: int) -> str:
        msg = (f"{ws}: {frm} -> {to}\n\nby hand\n\nUet-Run: {s.run}\nUet-Workstream: {ws}\n"
               f"Uet-Attempt: {attempt}\nUet-From: {frm}\nUet-To: {to}\n")
        return objects.make_commit(s.repo, tree, [parent], msg)

    c1 = append(tip, "e", "queued", "dropped", 1)  # e was dropped, not queued
    git(repo, "update-ref", f"refs/uet/ledger/{s.run}", c1)
    problems = fsck(s.repo)
    assert len(problems) == 1 and "moves from queued but the previous state was dropped" in \
        problems[0], problems
    c2 = append(tip, "e", "dropped", "queued", 1)  # dropped is final
    git(repo, "update-ref", f"refs/uet/ledger/{s.run}", c2)
    problems = fsck(s.repo)
    # the illegal move, and the state ref (dropped) now disagrees with the ledger (queued)
    assert any("illegal transition dropped -> queued" in p for p in problems), problems
    assert len(problems) == 2


# ----------------------------------------------------------------------------- after a rebase


def _rebase(s, led: Ledger, onto: str, wss: list[str], tag: str) -> dict[str, str]:
    """Re-integrate ``wss`` onto ``onto`` as `uet land --rebase` does; returns ws -> commit."""
    tip, out = onto, {}
    for ws in wss:
        tip = out[ws] = uet_commit(s.repo, tip, {f"{ws}.txt": f"{ws}\n"}, ws, s.run,
                                   subject=f"{ws}: change ({tag})")
    led.rebase_integration(onto, tip)
    return out


def _target_moves(s, parent: str, name: str) -> str:
    tree = objects.build_tree(s.repo, objects.commit_tree(s.repo, parent),
                              {f"{name}.txt": name.encode()})
    return objects.make_commit(s.repo, tree, [parent], f"someone else: {name}")


def test_rebase_moves_the_start_of_the_chain_to_the_newest_onto(repo: Path) -> None:
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    iref = f"refs/uet/integration/{s.run}"
    x1 = _target_moves(s, s.base, "x1")
    first = _rebase(s, led, x1, ["a", "c"], "first")
    assert fsck(s.repo, s.run) == []  # x1 is the target's own, not this run's
    x2 = _target_moves(s, x1, "x2")
    second = _rebase(s, led, x2, ["a", "c"], "second")
    rebase = led.tip
    assert fsck(s.repo, s.run) == []
    # c's change straight on x2, skipping the rebased a (committed): one line.
    skip = uet_commit(s.repo, x2, {"c.txt": "c\n"}, "c", s.run)
    git(repo, "update-ref", iref, skip)
    assert fsck(s.repo, s.run) == [f"{s.run}: a is committed but not on {iref}"]
    # The chain of the first rebase no longer counts: it does not start at x2.
    git(repo, "update-ref", iref, first["c"])
    assert fsck(s.repo, s.run) == [
        f"{s.run}: {iref} ({first['c'][:12]}) does not descend first-parent from {x2[:12]}, "
        f"where the rebase {rebase[:12]} put it"]
    git(repo, "update-ref", iref, second["c"])
    led.record("a", "rolled-back", attempt=1)  # a rollback leaves its commit on the chain
    led.record("c", "rolled-back", attempt=1)
    led.close()
    assert fsck(s.repo, s.run) == []
    git(repo, "fsck", "--strict", "--no-dangling")


def test_rebase_event_without_a_valid_onto(repo: Path) -> None:
    s, _ = scripted_run(repo)
    tip = git(repo, "rev-parse", f"refs/uet/ledger/{s.run}")
    msg = f"run: rebase\n\nby hand\n\nUet-Run: {s.run}\nUet-Onto: nowhere\n"
    forged = objects.make_commit(s.repo, objects.commit_tree(s.repo, tip), [tip], msg)
    git(repo, "update-ref", f"refs/uet/ledger/{s.run}", forged)
    assert fsck(s.repo) == [f"{s.run}: ledger commit {forged[:12]} (run: rebase) has no valid "
                            "Uet-Onto (nowhere)"]


def test_a_missing_ledger_commit_below_the_tip_is_one_line(repo: Path) -> None:
    s, _ = scripted_run(repo)
    first = git(repo, "rev-list", "--reverse", f"refs/uet/ledger/{s.run}").split()[1]
    (repo / ".git" / "objects" / first[:2] / first[2:]).unlink()
    problems = fsck(Repo.open(repo), s.run)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"run {s.run}: refs/uet/ledger/{s.run}:")
    assert "missing" in problems[0] and "uet fsck --repair" in problems[0]


def test_workstreams_a_rebase_skipped_as_already_applied_are_not_looked_for(repo: Path) -> None:
    s, led = scripted_run(repo, keep_open=True)
    assert led is not None
    # Another run landed a's change on the target: the rebase re-integrates c alone.
    x1 = uet_commit(s.repo, s.base, {"a.txt": "a\n"}, "a", "other-run")
    tip = uet_commit(s.repo, x1, {"c.txt": "c\n"}, "c", s.run, subject="c: change (rebased)")
    led.rebase_integration(x1, tip, trailers={"Uet-Already-Applied": "a"})  # as engine does
    led.close()
    assert fsck(s.repo, s.run) == []
    git(repo, "fsck", "--strict", "--no-dangling")
