"""``[verify] batch = K`` on a real repository and ledger, without the CLI: K patches judged as
one candidate (the furthest of the chain), committed head by head; a failing batch bisected
until the failing patch is found, which alone is quarantined after its flake check; the
verdict cache derived from a batch's ledger entries."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.engine.test_queue import _candidate_refs, _history, _quarantines, _round
from tests.engine.verifykit import Kit, kit
from uet_git.engine.queue import VerifyQueue
from uet_git.engine.verdicts import BATCH_CANDIDATE, VerdictCache, acceptance_key, from_ledger
from uet_git.engine.verify import checks_at
from uet_git.gitrepo import odb
from uet_git.ledger.fsck import fsck
from uet_git.ledger.log import read_ledger
from uet_git.spec.models import Config


def _config(batch: int) -> Config:
    return Config.model_validate({"sandbox": {"mode": "none"}, "verify": {"batch": batch}})


def _queue(k: Kit) -> VerifyQueue:
    checks = checks_at(k.repo, k.ledger.base, k.ctx.config)
    return VerifyQueue(k.ctx, checks, VerdictCache(), window=8)


def _counting(ctl: Path, *extra: str) -> dict[str, list[str]]:
    """Acceptance that appends a line to ``ctl/runs`` each time it runs (the same command for
    every workstream: one key, so a batch runs it once)."""
    return {"acceptance": [f"echo run >> {ctl / 'runs'}", *extra]}


def _runs(ctl: Path) -> int:
    f = ctl / "runs"
    return len(f.read_text().splitlines()) if f.exists() else 0


def _start(k: Kit, q: VerifyQueue, ids: list[str]) -> None:
    """z commits first (so no candidate is its own patch: each one's checks are due), then
    ``ids`` are queued and added."""
    k.queue("z", {"z.txt": "z"})
    q.add("z")
    _round(q)
    assert k.state("z") == "committed"
    for ws in ids:
        k.queue(ws, {f"{ws}.txt": ws})
        q.add(ws)


def _drain(q: VerifyQueue) -> list[list[tuple[str, str, int]]]:
    """Rounds until the queue is empty; each round's jobs as (ws, kind, span)."""
    rounds = []
    for _ in range(30):
        if not q.items:
            q.step()
            return rounds
        jobs = _round(q)
        rounds.append([(j.ws, j.kind, j.span) for j in jobs])
    raise AssertionError(f"the queue did not drain: {[(i.ws, i.status) for i in q.items]}")


def test_a_batch_of_four_is_judged_once_and_each_patch_commits(tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ids = ["a", "b", "c", "d"]
    with kit(tmp_path, {"z": {}, **{ws: _counting(ctl) for ws in ids}},
             config=_config(4)) as k:
        q = _queue(k)
        _start(k, q, ids)
        rounds = _drain(q)
        assert rounds[0] == [("d", "batch", 4)]  # one judging for the four
        assert _runs(ctl) == 1
        assert [k.state(ws) for ws in ids] == ["committed"] * 4
        assert _history(k) == ["z", *ids]
        assert _candidate_refs(k) == {}
        # Each patch's verified transition names the batch's candidate it passed on (the
        # integration tip now: the last patch's candidate).
        tip = k.ledger.integration_tip()
        for ws in ids:
            out = git(k.path, "log", "-1", f"--grep=^{ws}: applied -> verified",
                      f"--format=%(trailers:key={BATCH_CANDIDATE},valueonly)",
                      f"refs/uet/ledger/{k.ledger.run}")
            assert out.strip() == tip
        assert fsck(k.repo, k.ledger.run) == []


def test_a_failing_batch_is_bisected_and_only_the_bad_patch_quarantined(
        tmp_path: Path) -> None:
    """Every workstream's acceptance fails on a tree holding bad.txt: the batch of four fails,
    its first half (a, bad) fails, a alone passes and commits, so bad is the one (its
    candidate failed): its flake check on the tip quarantines it; c and d, rebuilt without
    it, pass as a batch."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ids = ["a", "bad", "c", "d"]
    spec = _counting(ctl, "test ! -e bad.txt")
    with kit(tmp_path, {"z": {}, **{ws: spec for ws in ids}}, config=_config(4)) as k:
        q = _queue(k)
        _start(k, q, ids)
        rounds = _drain(q)
        assert rounds[:3] == [[("d", "batch", 4)], [("bad", "batch", 2)], [("a", "batch", 1)]]
        assert rounds[3] == [("bad", "flake", 1), ("d", "batch", 2)]
        assert {ws: k.state(ws) for ws in ids} == {
            "a": "committed", "bad": "quarantined", "c": "committed", "d": "committed"}
        assert _quarantines(k) == ["bad"]
        assert k.ledger.state("bad").reason == "verify-failed"  # type: ignore[union-attr]
        assert _history(k) == ["z", "a", "c", "d"]
        subjects = git(k.path, "log", "--format=%s", f"refs/uet/ledger/{k.ledger.run}")
        assert subjects.count("run: verdict d failed") == 1  # the batch of four: evidence
        assert _candidate_refs(k) == {}
        assert fsck(k.repo, k.ledger.run) == []


def test_a_flaky_batch_failure_commits_every_patch(tmp_path: Path) -> None:
    """The batch fails once (a flake): a, b pass, then c; d, whose candidate (the batch's)
    failed, is then the one: its flake check passes and it commits. Nothing is quarantined."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    (ctl / "flaky").touch()
    flag = ctl / "flaky"
    ids = ["a", "b", "c", "d"]
    spec = _counting(ctl, f"test ! -e {flag} || {{ rm {flag}; exit 1; }}")
    with kit(tmp_path, {"z": {}, **{ws: spec for ws in ids}}, config=_config(4)) as k:
        q = _queue(k)
        _start(k, q, ids)
        rounds = _drain(q)
        assert rounds[:4] == [[("d", "batch", 4)], [("b", "batch", 2)], [("c", "batch", 1)],
                              [("d", "flake", 1)]]
        assert [k.state(ws) for ws in ids] == ["committed"] * 4
        assert _history(k) == ["z", *ids]


def test_the_cache_of_a_resumed_run_holds_the_batch_tree_not_each_patch_tree(
        tmp_path: Path) -> None:
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ids = ["a", "b"]
    with kit(tmp_path, {"z": {}, **{ws: _counting(ctl) for ws in ids}},
             config=_config(2)) as k:
        q = _queue(k)
        _start(k, q, ids)
        _drain(q)
        log = read_ledger(k.repo, k.ledger.run)
        checks = q.checks
        cache = from_ledger(k.repo, log.events, k.ctx.plan.workstreams, checks.base,
                            checks.hooks)
        key = acceptance_key(k.ctx.ws("a"))
        tip = k.ledger.integration_tip()
        first = odb.get_commit(k.repo, tip).parent
        assert cache.passed("acceptance", odb.tree_of(k.repo, tip), key)
        assert not cache.passed("acceptance", odb.tree_of(k.repo, first), key)


def test_uet_failing_on_a_batch_drops_its_last_patch_and_judges_the_others_again(
        tmp_path: Path) -> None:
    """The loop's path when a batch's judging raised (an internal error of its last patch):
    that patch leaves the queue; the others go back to be judged in another batch."""
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    ids = ["a", "b", "c"]
    with kit(tmp_path, {"z": {}, **{ws: _counting(ctl) for ws in ids}},
             config=_config(4)) as k:
        q = _queue(k)
        _start(k, q, ids)
        q.step()
        [job] = q.jobs(8)
        assert (job.ws, job.span) == ("c", 3)
        q.running -= 1  # as the loop does for a judging that raised
        q.drop("c")
        assert q.batches.out is None and [i.ws for i in q.items] == ["a", "b"]
        q.step()
        [again] = q.jobs(8)
        assert (again.ws, again.kind, again.span) == ("b", "batch", 2)
