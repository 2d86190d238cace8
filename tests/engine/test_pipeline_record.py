"""RunContext.record reports the state a transition left, read from its ledger commit."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.engine.context import recorded_from
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger


def test_recorded_from_is_the_uet_from_trailer_of_each_transition(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    tree = build_tree(repo, base, {"a.txt": b"b\n"})
    patch = make_commit(repo, tree, [base], "patch\n")
    plan = {"workstreams": ["w"], "edges": []}
    with Ledger.create(repo, base=base, target=None, plan=plan) as ledger:
        seen = []
        for to, kw in (("created", {"patch": patch}), ("validated", {}),
                       ("quarantined", {"reason": "verify-failed",
                                        # a summary line that looks like a trailer
                                        "summary": "Uet-From: queued\nnot it"})):
            oid = ledger.record("w", to, attempt=1, **kw)
            seen.append(recorded_from(repo, oid))
            assert git(path, "log", "-1", "--format=%s", oid).startswith("w: ")
    assert seen == [None, "created", "validated"]
