"""The integrator's walk queued -> applied -> verified -> committed on a real repository and
ledger, without the CLI: a clean patch, a conflict, acceptance failing on the candidate only,
a failing pre-merge hook, a cancelled verification, a resumed `applied` whose tip moved."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.verifykit import kit
from uet_git.engine.integrator import integrate
from uet_git.gitrepo import odb
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger import query
from uet_git.spec.models import Config
from uet_git.workers.sandbox import available

HOOK = ".uet/hooks/pre-merge.d/no-forbidden"
REJECT = "#!/bin/sh\nif grep -rq forbidden --include=*.txt .; then echo found >&2; exit 1; fi\n"


def test_queued_to_committed_moves_the_integration_ref(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}}) as k:
        patch = k.queue("a", {"a.txt": "a\n"})
        out = integrate(k.ctx, "a")
        assert (out.state, out.reason) == ("committed", None)
        rec = k.ledger.state("a")
        assert rec is not None and rec.state == "committed"
        # The patch's parent is the tip: the patch itself is the candidate.
        assert rec.candidate == patch == k.ledger.integration_tip() == out.tip
        assert git(k.path, "rev-parse", f"refs/uet/integration/{k.ledger.run}") == patch
        assert [t[1:] for t in k.observer.transitions] == [
            ("queued", "applied"), ("applied", "verified"), ("verified", "committed")]


def test_second_patch_is_rebased_onto_the_first(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        k.queue("a", {"a.txt": "a\n"})
        pb = k.queue("b", {"b.txt": "b\n"})
        integrate(k.ctx, "a")
        out = integrate(k.ctx, "b")
        assert out.state == "committed"
        cand = odb.get_commit(k.repo, out.tip)
        assert cand.parent == k.patches["a"] and cand.oid != pb
        assert parse_trailers(cand.message)["Uet-Workstream"] == "b"
        assert git(k.path, "show", f"{out.tip}:a.txt") == "a"


def test_conflict_quarantines_with_the_paths(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        k.queue("a", {"README.md": "from a\n"})
        k.queue("b", {"README.md": "from b\n"})
        integrate(k.ctx, "a")
        tip = k.ledger.integration_tip()
        out = integrate(k.ctx, "b")
        assert (out.state, out.reason) == ("quarantined", "conflict")
        assert k.ledger.integration_tip() == tip
        assert query.evidence(k.repo, k.ledger.run, "b", 1, "conflicts.txt") == b"README.md\n"


def test_acceptance_failing_on_the_candidate_only(tmp_path: Path) -> None:
    # b's acceptance passes on its own patch (no a.txt there) and fails on a's tip.
    with kit(tmp_path, {"a": {}, "b": {"acceptance": ["test ! -f a.txt"]}}) as k:
        k.queue("a", {"a.txt": "a\n"})
        k.queue("b", {"b.txt": "b\n"})
        integrate(k.ctx, "a")
        out = integrate(k.ctx, "b")
        assert (out.state, out.reason) == ("quarantined", "verify-failed")
        log = query.evidence(k.repo, k.ledger.run, "b", 1, "candidate-acceptance.log")
        assert log is not None and b"$ test ! -f a.txt" in log


def test_unchanged_tree_is_not_re_verified(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {"acceptance": ["false"]}}) as k:
        k.queue("a", {"a.txt": "a\n"})
        out = integrate(k.ctx, "a")
        assert out.state == "committed"  # acceptance passed in the worker on this very tree
        summary = [e.summary for e in query.history(k.repo, k.ledger.run, "a")
                   if e.to == "verified"]
        assert "the verified patch tree" in summary[0]


def test_failing_base_hook_quarantines_hook_failed(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}, files={"README.md": "x\n", HOOK: REJECT},
             executable=(HOOK,)) as k:
        k.queue("a", {"ok.txt": "fine\n"})
        k.queue("b", {"bad.txt": "forbidden\n"})
        assert integrate(k.ctx, "a").state == "committed"
        out = integrate(k.ctx, "b")
        assert (out.state, out.reason) == ("quarantined", "hook-failed")
        log = query.evidence(k.repo, k.ledger.run, "b", 1, "hooks.log")
        assert log is not None and HOOK.encode() in log and b"found" in log


def test_cancelled_verification_records_nothing_more(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {"acceptance": ["sleep 30"]}}) as k:
        k.queue("a", {"a.txt": "a\n"})
        k.queue("b", {"b.txt": "b\n"})
        integrate(k.ctx, "a")
        timer = threading.Timer(0.5, k.ctx.cancel.set)
        timer.start()
        try:
            out = integrate(k.ctx, "b")
        finally:
            timer.cancel()
        assert out.state is None and out.duration < 20
        assert k.state("b") == "applied"  # a resume continues from here


def test_resumed_applied_candidate_on_a_moved_tip_is_re_applied(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {}, "b": {}}) as k:
        k.queue("a", {"a.txt": "a\n"})
        pb = k.queue("b", {"b.txt": "b\n"})
        # b was applied onto the base (a crash after `applied`), then a committed.
        k.ledger.record("b", "applied", attempt=1, candidate=pb)
        integrate(k.ctx, "a")
        out = integrate(k.ctx, "b")
        assert out.state == "committed"
        assert odb.get_commit(k.repo, out.tip).parent == k.patches["a"]
        moves = [e.to for e in query.history(k.repo, k.ledger.run, "b")]
        assert moves[-4:] == ["queued", "applied", "verified", "committed"]


@pytest.mark.parametrize("mode", ["none", "bwrap"])
def test_candidate_commands_cannot_move_refs_outside_uet(tmp_path: Path, mode: str) -> None:
    if mode == "bwrap" and available() is not None:
        pytest.skip(f"no sandbox here: {available()}")
    evil = "git update-ref refs/heads/evil HEAD; true"
    config = Config.model_validate({"sandbox": {"mode": mode}})
    with kit(tmp_path, {"a": {}, "b": {"acceptance": [evil]}}, config=config) as k:
        k.queue("a", {"a.txt": "a\n"})
        k.queue("b", {"b.txt": "b\n"})
        integrate(k.ctx, "a")
        out = integrate(k.ctx, "b")  # its acceptance runs again: the candidate's tree is new
        if mode == "none":  # it ran: seen, put back, quarantined
            assert (out.state, out.reason) == ("quarantined", "tampered")
            ev = query.evidence(k.repo, k.ledger.run, "b", 1, "tampering.txt")
            assert ev is not None and b"refs/heads/evil" in ev
        else:  # refs are read-only in the sandbox: the update failed, nothing to see
            assert out.state == "committed"
        assert git(k.path, "for-each-ref", "refs/heads/evil") == ""
