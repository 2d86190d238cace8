"""The ledger writer on real repositories, checked with the git CLI itself."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import Forked, git, make_repo
from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.refs import RefConflict
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import layout, transact
from uet_git.ledger.evidence import evidence as read_evidence
from uet_git.ledger.gc import gc
from uet_git.ledger.states import STATES, TRANSITIONS, IllegalTransition
from uet_git.ledger.writer import MAX_EVIDENCE, Ledger, LedgerBusy, truncate

RUN = "20261125-101502-3f2a"


# ----------------------------------------------------------------------------- helpers


def make_patch(repo: Repo, base: str, ws: str, files: dict[str, bytes], attempt: int = 1) -> str:
    tree = objects.build_tree(repo, base, files)
    msg = f"{ws}: change\n\nUet-Workstream: {ws}\nUet-Run: {RUN}\nUet-Attempt: {attempt}\n"
    return objects.make_commit(repo, tree, [base], msg)


def uet_refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    return dict(line.split(" ") for line in out.splitlines() if line)


def object_count(path: Path) -> tuple[str, str]:
    stats = dict(
        line.split(": ") for line in git(path, "count-objects", "-v").splitlines()
    )
    return stats["count"], stats["in-pack"]


def fsck_strict(path: Path) -> None:
    proc = subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stderr.lower(), proc.stderr


def subjects(path: Path, run: str = RUN) -> list[str]:
    return git(path, "log", "--format=%s", f"refs/uet/ledger/{run}").splitlines()


def trailers_of(path: Path, rev: str) -> dict[str, str]:
    msg = git(path, "log", "-1", "--format=%B", rev)
    out = git(path, "interpret-trailers", "--parse", input=msg + "\n")
    return dict(line.split(": ", 1) for line in out.splitlines())


@pytest.fixture
def env(tmp_path: Path):
    path = make_repo(tmp_path / "repo", {"README.md": "hello\n", "src/a.py": "a = 1\n"})
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base
    ledger = Ledger.create(repo, base=base, target="main", plan={"ids": ["w1", "w2"]},
                           run_id=RUN)
    yield path, repo, base, ledger
    ledger.close()


def drive(ledger: Ledger, repo: Repo, base: str, ws: str, state: str) -> None:
    """Take a fresh ``ws`` to ``state`` through legal moves."""
    patch = make_patch(repo, base, ws, {f"{ws}.txt": ws.encode()})
    if state == "blocked":
        ledger.record(ws, "blocked", attempt=1)
        return
    if state in ("quarantined", "dropped"):
        ledger.record(ws, "quarantined", attempt=1, reason="tool-failed")
        if state == "dropped":
            ledger.record(ws, "dropped", attempt=1)
        return
    path = ["created", "validated", "queued", "applied", "verified", "committed", "rolled-back"]
    for step in path[: path.index(state) + 1]:
        kw: dict = {}
        if step == "created":
            kw["patch"] = patch
        if step == "applied":
            tip = ledger.integration_tip()
            kw["candidate"] = objects.make_commit(
                repo, objects.build_tree(repo, tip, {f"{ws}.txt": ws.encode()}), [tip],
                f"{ws}: candidate")
        if step == "committed":
            kw["integration"] = ledger.state(ws).candidate
        ledger.record(ws, step, attempt=1, **kw)


# ----------------------------------------------------------------------------- tests


def test_create_writes_root_commit_and_integration(env) -> None:
    path, _repo, base, ledger = env
    refs = uet_refs(path)
    assert refs == {f"refs/uet/ledger/{RUN}": ledger.tip, f"refs/uet/integration/{RUN}": base}
    assert subjects(path) == ["run: start"]
    t = trailers_of(path, f"refs/uet/ledger/{RUN}")
    assert t == {"Uet-Run": RUN, "Uet-Base": base, "Uet-Target": "main"}
    plan = git(path, "show", f"refs/uet/ledger/{RUN}:plan.json")
    assert '"ids"' in plan and '"w1"' in plan
    fsck_strict(path)


def test_create_refuses_an_existing_run(env) -> None:
    _path, repo, base, ledger = env
    ledger.close()
    with pytest.raises(UetError, match="already exists"):
        Ledger.create(repo, base=base, target="main", plan={}, run_id=RUN)
    with pytest.raises(UetError, match="bad run id"):
        Ledger.create(repo, base=base, target="main", plan={}, run_id="latest")
    with pytest.raises(UetError, match="not a commit"):
        Ledger.create(repo, base="nope", target="main", plan={})


def test_scripted_sequence_is_visible_to_git(env) -> None:
    path, repo, base, ledger = env
    p1 = make_patch(repo, base, "w1", {"src/a.py": b"a = 2\n"})
    ledger.record("w1", "created", attempt=1, patch=p1, summary="tool made 1 change",
                  evidence={"stdout": b"did it\n", "diffstat": b" src/a.py | 2 +-\n"},
                  trailers={"Uet-Duration": "1.5"})
    ledger.record("w1", "validated", attempt=1)
    ledger.record("w1", "queued", attempt=1)
    cand = objects.make_commit(repo, objects.commit_tree(repo, p1), [base], "w1 candidate")
    ledger.record("w1", "applied", attempt=1, candidate=cand)
    ledger.record("w1", "verified", attempt=1, summary="acceptance: 2 commands passed",
                  evidence={"acceptance.log": b"ok\n"})
    ledger.record("w1", "committed", attempt=1, integration=cand)
    ledger.record("w2", "quarantined", attempt=1, reason="tool-timeout",
                  evidence={"stderr": b"hung\n"})

    refs = uet_refs(path)
    assert refs[f"refs/uet/committed/{RUN}/w1"] == cand
    assert refs[f"refs/uet/patches/{RUN}/w1/1"] == p1
    assert refs[f"refs/uet/integration/{RUN}"] == cand
    ledger_tip = refs[f"refs/uet/ledger/{RUN}"]
    # No patch: the quarantined state ref points at the ledger commit that recorded it.
    assert refs[f"refs/uet/quarantined/{RUN}/w2"] == ledger_tip
    state_refs = [r for r in refs if layout.parse_ref(r).kind == "state"]
    assert sorted(state_refs) == [f"refs/uet/committed/{RUN}/w1", f"refs/uet/quarantined/{RUN}/w2"]
    assert git(path, "for-each-ref", "--format=%(refname)", "refs/uet/quarantined/") == \
        f"refs/uet/quarantined/{RUN}/w2"

    assert subjects(path) == [
        "w2: none -> quarantined", "w1: verified -> committed", "w1: applied -> verified",
        "w1: queued -> applied", "w1: validated -> queued", "w1: created -> validated",
        "w1: none -> created", "run: start",
    ]
    t = trailers_of(path, f"refs/uet/ledger/{RUN}~6")
    assert t == {"Uet-Run": RUN, "Uet-Workstream": "w1", "Uet-Attempt": "1", "Uet-From": "none",
                 "Uet-To": "created", "Uet-Patch": p1, "Uet-Duration": "1.5"}
    t = trailers_of(path, f"refs/uet/ledger/{RUN}~2")
    assert t["Uet-From"] == "applied" and t["Uet-To"] == "verified"
    assert t["Uet-Patch"] == p1 and t["Uet-Candidate"] == cand
    body = git(path, "log", "-1", "--format=%b", f"refs/uet/ledger/{RUN}~2")
    assert body.startswith("acceptance: 2 commands passed")
    t = trailers_of(path, f"refs/uet/ledger/{RUN}")
    assert t["Uet-Reason"] == "tool-timeout" and "Uet-Patch" not in t

    tip = f"refs/uet/ledger/{RUN}"
    assert git(path, "show", f"{tip}:evidence/w1/1/stdout") == "did it"
    assert git(path, "show", f"{tip}:evidence/w1/1/acceptance.log") == "ok"
    assert git(path, "show", f"{tip}:evidence/w2/1/stderr") == "hung"
    assert git(path, "show", f"{tip}:plan.json").startswith("{")
    assert git(path, "rev-list", "--count", tip) == "8"
    assert git(path, "rev-list", "--merges", "--count", tip) == "0"
    fsck_strict(path)


def test_cache_matches_a_fresh_open(env) -> None:
    path, repo, base, ledger = env
    for ws, st in [("w1", "committed"), ("w2", "queued"), ("w3", "blocked"),
                   ("w4", "dropped")]:
        drive(ledger, repo, base, ws, st)
    before = ledger.states()
    assert {ws: r.state for ws, r in before.items()} == {
        "w1": "committed", "w2": "queued", "w3": "blocked", "w4": "dropped"}
    integ = ledger.integration_tip()
    tip = ledger.tip
    ledger.close()
    with Ledger.open(repo, RUN) as again:
        assert again.states() == before
        assert again.base == base and again.target == "main"
        assert again.plan == {"ids": ["w1", "w2"]}
        assert again.integration_tip() == integ and again.tip == tip
        # and it keeps writing where the other left off
        again.record("w2", "applied", attempt=1,
                     candidate=make_patch(repo, integ, "w2", {"w2.txt": b"w2"}))
        assert again.state("w2").state == "applied"
    assert f"refs/uet/applied/{RUN}/w2" in uet_refs(path)
    fsck_strict(path)


def test_every_illegal_transition_is_refused_and_writes_nothing(env) -> None:
    path, repo, base, ledger = env
    frms: list[str | None] = [None, *STATES]
    refused = 0
    for frm in frms:
        ws = f"w-{frm or 'new'}"
        if frm is not None:
            drive(ledger, repo, base, ws, frm)
            assert ledger.state(ws).state == frm
        patch = make_patch(repo, base, ws, {"x": ws.encode()}, attempt=1)
        # git is asked once before and once after all the refused moves from this state:
        # a refused record() can only add refs and loose objects (nothing it does removes
        # one), so one that wrote anything leaves the refs or the object count changed at
        # the end, just as it would right after it.
        refs, objs, tip = uet_refs(path), object_count(path), ledger.tip
        tried: list[str] = []
        for to in STATES:
            if to in TRANSITIONS[frm]:
                continue
            kw: dict = {"reason": "tool-failed"} if to == "quarantined" else {}
            with pytest.raises(IllegalTransition, match="illegal transition"):
                ledger.record(ws, to, attempt=1, patch=patch, candidate=patch,
                              evidence={"log": b"should not be written"}, **kw)
            assert ledger.tip == tip, (frm, to)
            assert (ledger.state(ws).state if frm else ledger.state(ws)) == frm
            tried.append(to)
            refused += 1
        assert uet_refs(path) == refs, (frm, tried)
        assert object_count(path) == objs, (frm, tried)
    legal = sum(len(v) for v in TRANSITIONS.values())
    assert refused == len(frms) * len(STATES) - legal
    fsck_strict(path)


def test_reasons_and_attempts_are_checked(env) -> None:
    path, repo, base, ledger = env
    refs = uet_refs(path)
    with pytest.raises(IllegalTransition, match="needs a reason"):
        ledger.record("w1", "quarantined", attempt=1)
    with pytest.raises(IllegalTransition, match="unknown reason"):
        ledger.record("w1", "quarantined", attempt=1, reason="flaky")
    with pytest.raises(IllegalTransition, match="only quarantine"):
        ledger.record("w1", "blocked", attempt=1, reason="dependency-quarantined")
    with pytest.raises(IllegalTransition, match="unknown state"):
        ledger.record("w1", "merged", attempt=1)
    with pytest.raises(UetError, match="bad workstream id"):
        ledger.record("W 1", "created", attempt=1)
    with pytest.raises(UetError, match="bad attempt"):
        ledger.record("w1", "blocked", attempt=0)
    with pytest.raises(UetError, match="needs a patch"):
        ledger.record("w1", "created", attempt=1)
    with pytest.raises(UetError, match="bad trailer key"):
        ledger.record("w1", "blocked", attempt=1, trailers={"Bad Key": "x"})
    with pytest.raises(UetError, match="written by the ledger"):
        ledger.record("w1", "blocked", attempt=1, trailers={"Uet-To": "x"})
    with pytest.raises(UetError, match="must be bytes"):
        ledger.record("w1", "blocked", attempt=1, evidence={"log": 12})  # type: ignore[dict-item]
    with pytest.raises(UetError, match="bad evidence name"):
        ledger.record("w1", "blocked", attempt=1, evidence={"../x": b"x"})
    assert uet_refs(path) == refs

    ledger.record("w1", "quarantined", attempt=1, reason="tool-failed")
    with pytest.raises(IllegalTransition, match="new attempt"):
        ledger.record("w1", "quarantined", attempt=1, reason="tool-failed")
    ledger.record("w1", "quarantined", attempt=2, reason="tool-timeout")
    rec = ledger.state("w1")
    assert (rec.state, rec.attempt, rec.reason) == ("quarantined", 2, "tool-timeout")
    assert uet_refs(path)[f"refs/uet/quarantined/{RUN}/w1"] == ledger.tip
    with pytest.raises(IllegalTransition, match="older"):
        ledger.record("w1", "dropped", attempt=1)
    p3 = make_patch(repo, base, "w1", {"a": b"3"}, attempt=3)
    ledger.record("w1", "created", attempt=3, patch=p3)
    with pytest.raises(IllegalTransition, match="cannot start attempt"):
        ledger.record("w1", "validated", attempt=4)
    ledger.record("w1", "validated", attempt=3)
    other = make_patch(repo, base, "w1", {"a": b"other"}, attempt=3)
    with pytest.raises(UetError, match="patch refs never move"):
        ledger.record("w1", "queued", attempt=3, patch=other)
    ledger.record("w1", "queued", attempt=3, patch=p3)  # the same patch again is fine
    assert uet_refs(path)[f"refs/uet/patches/{RUN}/w1/3"] == p3
    assert f"refs/uet/patches/{RUN}/w1/1" not in uet_refs(path)
    fsck_strict(path)


def test_integration_only_fast_forwards(env) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "verified")
    unrelated = objects.make_commit(repo, objects.commit_tree(repo, base), [], "root")
    refs = uet_refs(path)
    with pytest.raises(UetError, match="only fast-forwards"):
        ledger.record("w1", "committed", attempt=1, integration=unrelated)
    assert uet_refs(path) == refs
    ledger.record("w1", "committed", attempt=1, integration=ledger.state("w1").candidate)
    assert uet_refs(path)[f"refs/uet/integration/{RUN}"] == ledger.state("w1").candidate
    # A fast-forward by more than one commit (the tip is not the new commit's parent) and a
    # move onto a sibling of the tip: the writer agrees with git's ancestry test.
    tip = ledger.integration_tip()
    mid = objects.make_commit(repo, objects.commit_tree(repo, tip), [tip], "mid")
    two_up = objects.make_commit(repo, objects.commit_tree(repo, mid), [mid], "two up")
    sibling = objects.make_commit(repo, objects.commit_tree(repo, tip), [base], "sibling")
    drive(ledger, repo, base, "w2", "verified")
    for integ, ff in ((sibling, False), (two_up, True)):
        is_ff = subprocess.run(["git", "merge-base", "--is-ancestor", tip, integ],
                               cwd=path).returncode == 0
        assert is_ff == ff
        if ff:
            ledger.record("w2", "committed", attempt=1, integration=integ)
        else:
            with pytest.raises(UetError, match="only fast-forwards"):
                ledger.record("w2", "committed", attempt=1, integration=integ)
    assert uet_refs(path)[f"refs/uet/integration/{RUN}"] == two_up


def test_cas_guards_against_a_writer_that_skipped_the_lock(env) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "created")
    # Someone moves the ledger branch behind the writer's back.
    rogue = objects.make_commit(repo, objects.commit_tree(repo, ledger.tip), [ledger.tip], "x")
    git(path, "update-ref", f"refs/uet/ledger/{RUN}", rogue)
    refs = uet_refs(path)
    with pytest.raises(RefConflict, match="lost a race"):
        ledger.record("w1", "validated", attempt=1)
    assert uet_refs(path) == refs
    assert ledger.state("w1").state == "created"


def test_event_is_a_run_level_commit(env) -> None:
    path, _repo, base, ledger = env
    refs = uet_refs(path)
    oid = ledger.event("run: land", "main fast-forwarded", trailers={"Uet-Landed": base},
                       evidence={"land.log": b"landed\n"})
    assert oid == ledger.tip
    after = uet_refs(path)
    assert after.pop(f"refs/uet/ledger/{RUN}") == oid
    refs.pop(f"refs/uet/ledger/{RUN}")
    assert after == refs
    assert subjects(path)[0] == "run: land"
    assert trailers_of(path, oid) == {"Uet-Run": RUN, "Uet-Landed": base}
    assert git(path, "show", f"{oid}:run/land.log") == "landed"
    ledger.event("finish")
    assert subjects(path)[0] == "run: finish"


def test_large_evidence_is_truncated_with_a_marker(env) -> None:
    path, repo, base, ledger = env
    data = b"HEAD" + b"x" * (3 * MAX_EVIDENCE) + b"TAIL"
    drive(ledger, repo, base, "w1", "created")
    ledger.record("w1", "validated", attempt=1,
                  evidence={"stdout": data, "small": b"s", "text/log": "caf\u00e9\n"})
    assert git(path, "show", f"refs/uet/ledger/{RUN}:evidence/w1/1/text/log") == "caf\u00e9"
    raw = subprocess.run(["git", "cat-file", "blob", f"refs/uet/ledger/{RUN}:evidence/w1/1/stdout"],
                         cwd=path, capture_output=True, check=True).stdout
    assert len(raw) <= MAX_EVIDENCE
    assert raw.startswith(b"HEADxxx") and raw.endswith(b"xxxTAIL")
    cut = len(data) - (len(raw) - len(raw.split(b"\n")[1]) - 2)
    assert f"[uet: {cut} bytes cut here".encode() in raw
    assert truncate(b"short") == b"short"
    t = truncate(b"a" * 1000 + b"b" * 1000, limit=400)
    assert t.startswith(b"a") and t.endswith(b"b") and len(t) <= 400


def test_evidence_up_to_one_mib_is_kept_byte_for_byte(env) -> None:
    """The README's promise: each evidence file is kept whole up to 1 MiB."""
    path, repo, base, ledger = env
    assert MAX_EVIDENCE == 1 << 20
    data = os.urandom(MAX_EVIDENCE // 2).hex().encode()  # exactly 1 MiB
    assert len(data) == MAX_EVIDENCE
    drive(ledger, repo, base, "w1", "created")
    ledger.record("w1", "validated", attempt=1, evidence={"acceptance.log": data})
    raw = subprocess.run(["git", "cat-file", "blob",
                          f"refs/uet/ledger/{RUN}:evidence/w1/1/acceptance.log"],
                         cwd=path, capture_output=True, check=True).stdout
    assert raw == data
    assert query_evidence(repo, "w1", "acceptance.log") == data
    bigger = data + b"!"
    ledger.record("w1", "queued", attempt=1, evidence={"acceptance.log": bigger})
    kept = query_evidence(repo, "w1", "acceptance.log")
    assert len(kept) <= MAX_EVIDENCE and b"[uet: " in kept and kept.endswith(b"!")


def query_evidence(repo: Repo, ws: str, name: str) -> bytes:
    data = read_evidence(repo, RUN, ws, 1, name)
    assert isinstance(data, bytes)
    return data


def test_lock_makes_a_second_writer_fail_at_once(env) -> None:
    _path, repo, _base, ledger = env
    import os
    import time
    t0 = time.monotonic()
    with pytest.raises(LedgerBusy, match=f"run {RUN} is being written by another uet process "
                       rf"\(pid {os.getpid()}\)"):
        Ledger.open(repo, RUN)
    assert time.monotonic() - t0 < 2  # no waiting for the lock
    ledger.close()
    with Ledger.open(repo, RUN) as again:
        assert again.states() == {}
    with pytest.raises(UetError, match="closed"):
        ledger.record("w1", "blocked", attempt=1)
    with pytest.raises(UetError, match="no run"):
        Ledger.open(repo, "20200101-000000-abcd")


def test_threads_record_concurrently(env) -> None:
    path, repo, base, ledger = env
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            drive(ledger, repo, base, f"t{i}", "queued")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert git(path, "rev-list", "--count", f"refs/uet/ledger/{RUN}") == str(1 + 8 * 3)
    assert len(git(path, "for-each-ref", f"refs/uet/queued/{RUN}/").splitlines()) == 8
    ledger.close()
    with Ledger.open(repo, RUN) as again:
        assert {r.state for r in again.states().values()} == {"queued"}
    fsck_strict(path)


def test_patches_and_evidence_survive_gc_prune(env) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    ledger.record("w2", "quarantined", attempt=1, reason="verify-failed",
                  patch=make_patch(repo, base, "w2", {"q": b"q"}),
                  evidence={"acceptance.log": b"FAILED test_x\n"})
    patch_w2 = ledger.state("w2").patch
    patch_w1 = ledger.state("w1").patch
    ledger.close()
    git(path, "gc", "--prune=now", "--quiet")
    assert git(path, "count-objects", "-v").splitlines()[0] == "count: 0"
    tip = f"refs/uet/ledger/{RUN}"
    assert git(path, "show", f"{tip}:evidence/w2/1/acceptance.log") == "FAILED test_x"
    for p in (patch_w1, patch_w2):
        assert git(path, "cat-file", "-t", p) == "commit"
        git(path, "show", "--stat", p)
    fsck_strict(path)
    with Ledger.open(repo, RUN) as again:  # packed refs read back too
        assert again.state("w2").reason == "verify-failed"
        again.record("w2", "dropped", attempt=1)
    fsck_strict(path)


def test_works_from_a_linked_worktree(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo")
    git(path, "worktree", "add", "-q", "--detach", str(tmp_path / "wt"))
    repo = Repo.open(tmp_path / "wt")
    base = repo.rev_parse("HEAD")
    with Ledger.create(repo, base=base, target=None, plan={}) as ledger:
        ledger.record("a", "blocked", attempt=1)
        run = ledger.run
    assert layout.RUN_RE.match(run)
    assert f"refs/uet/blocked/{run}/a" in uet_refs(path)
    assert (path / ".git" / "uet" / "locks").is_dir()
    t = trailers_of(path, f"refs/uet/ledger/{run}~1")
    assert "Uet-Target" not in t
    with Ledger.open(Repo.open(path), run) as again:
        assert again.target is None and again.state("a").state == "blocked"


def test_body_that_looks_like_a_patch_or_trailers_keeps_the_trailers(env) -> None:
    path, _repo, _base, ledger = env
    summary = "acceptance output:\n---\n--- a/x\nFailed: 2\n\nNot-A-Trailer: really"
    oid = ledger.record("w1", "blocked", attempt=1, summary=summary)
    t = trailers_of(path, oid)
    assert t["Uet-To"] == "blocked" and t["Uet-Workstream"] == "w1"
    assert "Not-A-Trailer" not in t and "Failed" not in t
    body = git(path, "log", "-1", "--format=%b", oid)
    assert "Not-A-Trailer: really" in body and " --- a/x" in body


def test_a_generated_run_id_that_is_taken_is_replaced(env, monkeypatch) -> None:
    path, repo, base, _ledger = env
    ids = iter([RUN, RUN, "20261125-101502-0001"])
    monkeypatch.setattr(layout, "new_run_id", lambda: next(ids))
    with Ledger.create(repo, base=base, target="main", plan={}) as other:
        assert other.run == "20261125-101502-0001"
    assert sorted(r for r in uet_refs(path) if "/ledger/" in r) == [
        "refs/uet/ledger/20261125-101502-0001", f"refs/uet/ledger/{RUN}"]


def test_a_ref_lock_held_for_a_moment_is_waited_for(env, monkeypatch) -> None:
    path, _repo, _base, ledger = env
    lock = path / ".git" / "refs" / "uet" / "ledger" / f"{RUN}.lock"
    lock.write_text("")  # as a user's `git pack-refs` would, briefly
    timer = threading.Timer(0.3, lock.unlink)
    timer.start()
    try:
        ledger.record("w1", "blocked", attempt=1)
    finally:
        timer.join()
    assert ledger.state("w1").state == "blocked"
    assert f"refs/uet/blocked/{RUN}/w1" in uet_refs(path)
    # A lock that stays is reported, and nothing is written (shorter retries here).
    monkeypatch.setattr(transact, "LOCK_RETRY_SECONDS", 0.1)
    lock.write_text("")
    refs = uet_refs(path)
    with pytest.raises(RefConflict, match="could not lock its refs") as info:
        ledger.record("w1", "dropped", attempt=1)
    assert info.value.lock_held
    lock.unlink()
    assert uet_refs(path) == refs
    ledger.record("w1", "dropped", attempt=1)
    fsck_strict(path)


def test_a_run_collected_by_gc_can_still_be_written(env) -> None:
    from datetime import timedelta

    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    drive(ledger, repo, base, "w2", "dropped")
    cand = ledger.state("w1").candidate
    ledger.close()
    result = gc(repo, older_than=timedelta(0), prune_dropped=True)
    assert f"refs/uet/committed/{RUN}/w1" in result.removed
    assert f"refs/uet/dropped/{RUN}/w2" in result.removed
    with Ledger.open(repo, RUN) as again:
        assert again.state("w1").collected and again.state("w1").state == "committed"
        assert again.integration_tip() == cand
        again.record("w1", "rolled-back", attempt=1)
        assert again.state("w1").state == "rolled-back"
    refs = uet_refs(path)
    assert refs[f"refs/uet/rolled-back/{RUN}/w1"] == again.state("w1").patch
    # A run whose integration ref gc removed (it was still the base): recreated on a move.
    run2 = "20261125-101503-0b0b"
    with Ledger.create(repo, base=base, target="main", plan={}, run_id=run2) as l2:
        drive(l2, repo, base, "w3", "dropped")
    gc(repo, older_than=timedelta(0), prune_dropped=True)
    assert f"refs/uet/integration/{run2}" not in uet_refs(path)
    with Ledger.open(repo, run2) as l2:
        assert l2.integration_tip() == base
        drive(l2, repo, base, "w4", "committed")
        cand2 = l2.state("w4").candidate
    assert uet_refs(path)[f"refs/uet/integration/{run2}"] == cand2
    fsck_strict(path)


# ----------------------------------------------------------------------------- rebase_integration


def rebased_chain(repo: Repo, onto: str, wss: list[str]) -> str:
    """Each workstream's change re-applied onto ``onto``, one commit each; returns the tip."""
    tip = onto
    for ws in wss:
        tree = objects.build_tree(repo, tip, {f"{ws}.txt": ws.encode()})
        tip = objects.make_commit(repo, tree, [tip], f"{ws}: change\n\nUet-Workstream: {ws}\n")
    return tip


def moved_target(path: Path) -> str:
    """The target (main) moves on by someone else's commit; returns its new tip."""
    repo = Repo.open(path)
    main = git(path, "rev-parse", "main")
    onto = objects.make_commit(repo, objects.build_tree(repo, main, {"other.txt": b"x\n"}),
                               [main], "someone else")
    git(path, "update-ref", "refs/heads/main", onto, main)
    return onto


def test_rebase_integration_moves_off_the_fast_forward_path_in_one_commit(env) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    old = ledger.integration_tip()
    onto = moved_target(path)
    new = rebased_chain(repo, onto, ["w1"])
    refs = uet_refs(path)
    oid = ledger.rebase_integration(onto, new, summary="re-integrated w1", old=old,
                                    evidence={"rebase.log": b"w1 ok\n"},
                                    trailers={"Uet-Rebased": "w1"})
    after = uet_refs(path)
    assert after.pop(f"refs/uet/ledger/{RUN}") == oid
    assert after.pop(f"refs/uet/integration/{RUN}") == new
    for name in (f"refs/uet/ledger/{RUN}", f"refs/uet/integration/{RUN}"):
        refs.pop(name)
    assert after == refs  # nothing else moved: the state refs keep the verified candidates
    assert git(path, "rev-parse", f"{oid}^") != oid and subjects(path)[0] == "run: rebase"
    assert trailers_of(path, oid) == {
        "Uet-Run": RUN, "Uet-Onto": onto, "Uet-Previous-Integration": old,
        "Uet-Integration": new, "Uet-Rebased": "w1"}
    assert git(path, "log", "-1", "--format=%b", oid).startswith("re-integrated w1")
    assert git(path, "show", f"{oid}:run/rebase.log") == "w1 ok"
    assert ledger.integration_tip() == new and ledger.tip == oid
    # Later moves fast-forward from the new tip, and a fresh open agrees with the cache.
    drive(ledger, repo, base, "w2", "committed")
    assert git(path, "rev-parse", f"refs/uet/integration/{RUN}^") == new
    tip, integ = ledger.tip, ledger.integration_tip()
    ledger.close()
    with Ledger.open(repo, RUN) as again:
        assert (again.tip, again.integration_tip()) == (tip, integ)
    fsck_strict(path)


def test_rebase_integration_refuses_and_writes_nothing(env) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    old = ledger.integration_tip()
    onto = moved_target(path)
    new = rebased_chain(repo, onto, ["w1"])
    refs, tip = uet_refs(path), ledger.tip
    with pytest.raises(UetError, match="does not descend from"):
        ledger.rebase_integration(onto, old)  # the old chain is not on the new tip
    with pytest.raises(UetError, match="moved during the rebase"):
        ledger.rebase_integration(onto, new, old=base)
    with pytest.raises(UetError, match="not an object"):
        ledger.rebase_integration("0" * 40, new)
    with pytest.raises(UetError, match="written by the ledger itself"):
        ledger.rebase_integration(onto, new, trailers={"Uet-Integration": onto})
    for key in ("Uet-Onto", "Uet-Previous-Integration"):  # only a real rebase writes them
        with pytest.raises(UetError, match="written by the ledger itself"):
            ledger.event("run: rebase", trailers={key: onto})
    assert uet_refs(path) == refs and ledger.tip == tip and ledger.integration_tip() == old
    # Someone moved the integration ref behind the writer's back: the CAS refuses both refs.
    git(path, "update-ref", f"refs/uet/integration/{RUN}", base)
    with pytest.raises(RefConflict, match="run: rebase lost a race"):
        ledger.rebase_integration(onto, new)
    assert git(path, "rev-parse", f"refs/uet/ledger/{RUN}") == tip
    assert git(path, "rev-parse", f"refs/uet/integration/{RUN}") == base
    ledger.close()
    with pytest.raises(UetError, match="closed"):
        ledger.rebase_integration(onto, new)


def test_rebase_integration_of_a_run_collected_by_gc_recreates_the_ref(env) -> None:
    from datetime import timedelta

    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    ledger.close()
    git(path, "update-ref", "refs/heads/main", ledger.integration_tip())  # landed
    gc(repo, older_than=timedelta(0))
    assert f"refs/uet/integration/{RUN}" not in uet_refs(path)
    onto = moved_target(path)
    new = rebased_chain(repo, onto, ["w1"])
    with Ledger.open(repo, RUN) as again:
        again.rebase_integration(onto, new)
    assert uet_refs(path)[f"refs/uet/integration/{RUN}"] == new


def test_rebase_integration_is_serialised_with_record(env) -> None:
    """Threads recording while another rebases: every commit lands on the ledger branch once,
    the cache stays the refs' truth."""
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    onto = moved_target(path)
    new = rebased_chain(repo, onto, ["w1"])
    errors: list[BaseException] = []

    def queue_many() -> None:
        try:
            for i in range(15):
                ws = f"t{i}"
                ledger.record(ws, "created", attempt=1,
                              patch=make_patch(repo, base, ws, {f"{ws}.txt": b"t"}))
                ledger.record(ws, "validated", attempt=1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=queue_many)
    t.start()
    ledger.rebase_integration(onto, new)
    t.join()
    assert not errors
    assert subjects(path).count("run: rebase") == 1 and len(subjects(path)) == 6 + 1 + 30 + 1
    assert uet_refs(path)[f"refs/uet/integration/{RUN}"] == new == ledger.integration_tip()
    assert git(path, "rev-parse", f"refs/uet/ledger/{RUN}") == ledger.tip


@pytest.mark.parametrize("point,moved", [("after-objects", False), ("after-prepare", False),
                                         ("after-commit", True)])
def test_rebase_integration_killed_leaves_old_or_new(env, point: str, moved: bool) -> None:
    path, repo, base, ledger = env
    drive(ledger, repo, base, "w1", "committed")
    old, tip = ledger.integration_tip(), ledger.tip
    ledger.close()
    onto = moved_target(path)
    new = rebased_chain(repo, onto, ["w1"])

    def rebase() -> None:  # a writer process of its own, forked (no new interpreter)
        with Ledger.open(Repo.open(path), RUN) as led:
            led.rebase_integration(onto, new)

    def writer(crash: str) -> tuple[int, str]:
        child = Forked(rebase, env={"UET_LEDGER_CRASH": crash})
        _out, err = child.communicate(timeout=60)
        return child.returncode, err

    code, err = writer(f"{point}:run:rebase")
    assert code == 99, err
    refs = uet_refs(path)
    if moved:
        assert refs[f"refs/uet/integration/{RUN}"] == new
        assert subjects(path)[0] == "run: rebase"
    else:
        assert refs[f"refs/uet/integration/{RUN}"] == old
        assert refs[f"refs/uet/ledger/{RUN}"] == tip
    with Ledger.open(repo, RUN) as again:  # no repair needed either way
        assert again.integration_tip() == (new if moved else old)
    assert "run: repair" not in subjects(path)
    # A record() crash spec does not fire on a rebase (and vice versa).
    code, err = writer(f"{point}:w1")
    assert code == 0, err
    assert uet_refs(path)[f"refs/uet/integration/{RUN}"] == new
    fsck_strict(path)
