"""The queue keeps the order patches were handed to workers in: a patch whose worker judged
it on a tail holding patches handed out before it waits for them (at most as long as its own
acceptance took), so the queue's candidates are the trees the workers judged."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import git
from tests.engine.test_queue import QUICK, _queue
from tests.engine.verifykit import kit
from uet_git.engine.verdicts import acceptance_key
from uet_git.gitrepo import odb
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.ledger.writer import Step


def test_patches_arriving_out_of_hand_out_order_are_judged_nowhere_again(
        tmp_path: Path) -> None:
    with kit(tmp_path, {"a": QUICK, "b": QUICK, "c": QUICK}) as k:
        patches = {ws: k.queue(ws, {f"{ws}.txt": ws}) for ws in "abc"}
        q = _queue(k, window=4)
        tails = {ws: q.worker_tail(patches[ws]) or patches[ws] for ws in "abc"}
        for ws in "abc":  # what the workers' passes put in the cache
            q.cache.add("acceptance", odb.tree_of(k.repo, tails[ws]),
                        acceptance_key(k.ctx.ws(ws)))
        time.sleep(0.05)  # their acceptance took a while: c waits that long at most
        q.add("c")  # c's acceptance ended first
        q.step()
        assert k.state("c") == "queued" and q.jobs(8) == []  # waits for a and b
        assert q.ctx.queue_tail == tails["c"]  # a worker done now is judged on a + b + c
        q.add("b")
        q.step()
        assert [i.ws for i in q.items] == ["b", "c"] and q.jobs(8) == []
        q.add("a")
        q.step()
        # Built in the order handed out: each candidate is a tree a worker judged.
        assert [k.state(ws) for ws in "abc"] == ["committed"] * 3 and q.items == []
        assert odb.tree_of(k.repo, k.ledger.integration_tip()) == odb.tree_of(k.repo,
                                                                                tails["c"])


def test_a_waiting_patch_goes_on_when_the_one_before_leaves_or_its_hold_ends(
        tmp_path: Path) -> None:
    with kit(tmp_path, {"a": QUICK, "b": QUICK, "c": QUICK, "d": QUICK}) as k:
        patches = {ws: k.queue(ws, {f"{ws}.txt": ws}) for ws in "abcd"}
        q = _queue(k, window=4)
        def hand(ws: str) -> None:  # to a worker, whose acceptance passes on that tail
            tail = q.worker_tail(patches[ws]) or patches[ws]
            q.cache.add("acceptance", odb.tree_of(k.repo, tail), acceptance_key(k.ctx.ws(ws)))

        for ws in "ab":
            hand(ws)
        # b's acceptance took a while: it waits that long for a at most. Without it the hold
        # is the few microseconds between hand and add, and a busy machine ends it before
        # the step below looks (seen under xdist on 2 cores).
        time.sleep(0.1)
        q.add("b")
        q.step()
        assert k.state("b") == "queued" and q.items[0].candidate is None
        q.forget(patches["a"])  # a's worker failed: b no longer waits
        q.step()
        assert k.state("b") == "committed"  # on the tip: its patch, judged in its worker
        # c waits for d's arrival only as long as its own acceptance took (here: none).
        for ws in "dc":
            hand(ws)
        q.add("c")
        time.sleep(0.01)
        q.step()
        assert [(i.ws, i.status) for i in q.items] == [("c", "built")]  # without d


def test_a_patch_from_a_worker_is_queued_and_committed_in_one_group_transaction(
        tmp_path: Path) -> None:
    """The worker's `queued` is still being written (``Ledger.submit``) when the queue takes
    the patch: the queue reads patch and attempt from the patch's trailers instead of waiting
    for that write, and its commit goes in the same group transaction."""
    with kit(tmp_path, {"a": QUICK}) as k:
        base = k.ledger.base
        tree = build_tree(k.repo, base, {"a.txt": b"a"})
        patch = make_commit(k.repo, tree, [base], f"a\n\nUet-Workstream: a\n"
                            f"Uet-Run: {k.ledger.run}\nUet-Attempt: 1\n")
        k.ledger.record("a", "created", attempt=1, patch=patch)
        k.ledger.record("a", "validated", attempt=1)
        q = _queue(k, window=4)
        assert q.worker_tail(patch) is None  # on the tip: judged as it is, in its worker
        q.cache.add("acceptance", odb.tree_of(k.repo, patch), acceptance_key(k.ctx.ws("a")))
        k.ledger.submit("a", [Step("queued")], attempt=1)  # a worker's record_later
        q.add("a")
        assert git(k.path, "for-each-ref", "--format=%(refname)",
                   "refs/uet/validated/") != ""  # nothing waited for the queued write
        q.step()
        assert k.state("a") == "committed"
        log = git(k.path, "log", "--format=%s", f"refs/uet/ledger/{k.ledger.run}").splitlines()
        assert log[:4] == ["a: verified -> committed", "a: applied -> verified",
                           "a: queued -> applied", "a: validated -> queued"]
