"""`uet drop` / `uet retry` state changes on scripted ledgers (real writer, real commits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.landkit import Built, fsck_clean, scripted_run
from tests.conftest import git, uet
from uet_git.commands.actions import descendants, drop_ws, retry_ws, unblocked_by
from uet_git.engine.options import RunOptions
from uet_git.errors import UetError
from uet_git.ledger.writer import Ledger

DEPS = {"ws-b": ["ws-a"], "ws-c": ["ws-b"], "ws-d": ["ws-x", "ws-a"]}


def state_refs(b: Built) -> dict[str, str]:
    """``{ws: state}`` read from the refs with the git CLI."""
    out = git(b.path, "for-each-ref", "--format=%(refname)", "refs/uet/")
    states: dict[str, str] = {}
    for name in out.splitlines():
        parts = name.split("/")
        if len(parts) == 5 and parts[3] == b.run and parts[2] not in ("patches",):
            assert parts[4] not in states, f"two state refs for {parts[4]}"
            states[parts[4]] = parts[2]
    return states


def quarantined_chain(tmp_path: Path, reason: str = "verify-failed") -> Built:
    return scripted_run(tmp_path / "repo", [
        ("ws-x", "committed", {"x.txt": b"x\n"}),
        ("ws-a", f"quarantined:{reason}", {"a.txt": b"a by ws-a\n"}),
        ("ws-b", "blocked", {}),
        ("ws-c", "pending", {}),
        ("ws-d", "blocked", {}),
        ("ws-e", "failed:tool-timeout", {}),
    ], deps=DEPS)


def test_descendants_and_unblocked() -> None:
    deps = {"ws-x": [], "ws-a": [], **DEPS}
    assert descendants(deps, "ws-a") == ["ws-b", "ws-c", "ws-d"]
    assert descendants(deps, "ws-c") == []
    states = {"ws-x": type("R", (), {"state": "quarantined"})()}
    # ws-d also needs ws-x, which is not committed: it stays out.
    assert unblocked_by(deps, states, "ws-a") == ["ws-b", "ws-c"]


def test_drop_quarantined_drops_its_blocked_dependents(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    msg = drop_ws(b.repo, b.run, "ws-a")
    assert "\n" not in msg
    assert msg.startswith("dropped ws-a") and "ws-b, ws-c, ws-d" in msg
    st = state_refs(b)
    assert st == {"ws-x": "committed", "ws-a": "dropped", "ws-b": "dropped", "ws-c": "dropped",
                  "ws-d": "dropped", "ws-e": "quarantined"}
    # The dropped patch is still reachable: refs/uet/dropped/RUN/ws-a points at it.
    assert git(b.path, "rev-parse", f"refs/uet/dropped/{b.run}/ws-a") == b.patches["ws-a"]
    assert git(b.path, "rev-parse", f"refs/uet/patches/{b.run}/ws-a/1") == b.patches["ws-a"]
    subjects = git(b.path, "log", "--format=%s", f"refs/uet/ledger/{b.run}").splitlines()
    assert subjects[:5] == ["ws-d: blocked -> dropped", "ws-c: blocked -> dropped",
                            "ws-c: none -> blocked", "ws-b: blocked -> dropped",
                            "ws-a: quarantined -> dropped"]
    fsck_clean(b.path)


def test_drop_blocked_alone(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    msg = drop_ws(b.repo, b.run, "ws-d")
    assert msg == f"dropped ws-d in run {b.run}"
    assert state_refs(b)["ws-d"] == "dropped"
    assert state_refs(b)["ws-a"] == "quarantined"


def test_drop_refuses_a_landed_workstream(tmp_path: Path) -> None:
    # A committed workstream can be dropped while it has not landed (it leaves the
    # integration chain); once it is on the target only a rollback undoes it.
    b = quarantined_chain(tmp_path)
    assert uet("land", b.run, cwd=b.path).returncode == 0
    before = git(b.path, "rev-parse", f"refs/uet/ledger/{b.run}")
    with pytest.raises(UetError) as exc:
        drop_ws(b.repo, b.run, "ws-x")
    assert str(exc.value) == f"ws-x has landed on main; `uet rollback {b.run}` undoes a landing"
    assert git(b.path, "rev-parse", f"refs/uet/ledger/{b.run}") == before


def test_drop_unknown_and_pending(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    with pytest.raises(UetError, match="no workstream 'ws-zz'"):
        drop_ws(b.repo, b.run, "ws-zz")
    with pytest.raises(UetError, match="ws-c has not run yet"):
        drop_ws(b.repo, b.run, "ws-c")


def test_drop_refused_while_run_is_live(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    with Ledger.open(b.repo, b.run), pytest.raises(UetError, match="another uet process"):
        drop_ws(b.repo, b.run, "ws-a")
    assert state_refs(b)["ws-a"] == "quarantined"


def test_retry_refusals_write_nothing(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path, reason="scope-violation")
    before = git(b.path, "rev-parse", f"refs/uet/ledger/{b.run}")
    opts = RunOptions(jobs=1)
    cases = [
        ("ws-x", False, "ws-x is committed; only quarantined or blocked workstreams can be "
                        "retried"),
        ("ws-b", False, "ws-b depends on ws-a, which is quarantined; retry ws-a first"),
        ("ws-a", True, "ws-a was quarantined for scope-violation; its patch cannot be "
                       "re-applied"),
        ("ws-e", True, "ws-e has no patch to re-apply"),
        ("ws-c", False, "ws-c has not run yet"),
    ]
    for ws, reapply, expected in cases:
        with pytest.raises(UetError) as exc:
            retry_ws(b.repo, b.run, ws, reapply=reapply, options=opts)
        assert str(exc.value).startswith(expected), str(exc.value)
        assert "\n" not in str(exc.value)
    assert git(b.path, "rev-parse", f"refs/uet/ledger/{b.run}") == before
    fsck_clean(b.path)
