"""The state machine as data: the issue's moves, the extra ones, reasons, the README table."""

from __future__ import annotations

import pytest

from uet_git.errors import UetError
from uet_git.ledger.states import (
    ATTEMPTS,
    REASONS,
    STATES,
    TERMINAL,
    TRANSITIONS,
    AttemptRule,
    IllegalTransition,
    Reason,
    State,
    check_attempt,
    check_reason,
    check_transition,
    legal_pairs,
    transitions_markdown,
)

# The list, verbatim, plus docs/internals.md's extra moves.
REQUIRED = {
    None: {"created", "quarantined"},
    "created": {"validated", "quarantined"},
    "validated": {"queued", "quarantined"},
    "queued": {"applied", "quarantined", "blocked"},
    "applied": {"verified", "quarantined", "queued"},
    "verified": {"committed", "queued", "quarantined"},
    "committed": {"rolled-back"},
    "quarantined": {"dropped", "queued", "created"},
    "blocked": {"queued", "dropped", "created", "quarantined"},
}


def test_table_has_every_required_move() -> None:
    assert set(TRANSITIONS) == {None, *STATES}
    for frm, tos in REQUIRED.items():
        assert tos <= TRANSITIONS[frm], frm
        for to in tos:
            check_transition(frm, to)
    for tos in TRANSITIONS.values():
        assert tos <= set(STATES)
    assert TRANSITIONS["dropped"] == TRANSITIONS["rolled-back"] == frozenset()
    assert {"committed", "dropped", "rolled-back"} == set(TERMINAL)


def test_illegal_moves_raise_a_user_error() -> None:
    illegal = [(f, t) for f in TRANSITIONS for t in STATES if t not in TRANSITIONS[f]]
    assert len(illegal) > 50
    for frm, to in illegal:
        with pytest.raises(IllegalTransition, match="illegal transition") as info:
            check_transition(frm, to)
        assert isinstance(info.value, UetError)
        assert "\n" not in str(info.value)
    with pytest.raises(IllegalTransition, match="unknown state 'merged'"):
        check_transition("created", "merged")
    with pytest.raises(IllegalTransition, match="unknown state"):
        check_transition("nope", "created")
    with pytest.raises(IllegalTransition, match=r"none -> committed"):
        check_transition(None, "committed")


def test_reasons() -> None:
    assert REASONS == (
        "tool-failed", "tool-timeout", "empty", "scope-violation", "too-large", "conflict",
        "verify-failed", "hook-failed", "dependency-quarantined", "breaker-open",
        "internal-error", "tampered", "protected-path", "bad-tree",
    )
    for r in REASONS:
        check_reason("quarantined", r)
    for bad in (None, "", "flaky"):
        with pytest.raises(IllegalTransition):
            check_reason("quarantined", bad)
    for s in STATES:
        if s != "quarantined":
            check_reason(s, None)
            with pytest.raises(IllegalTransition, match="only quarantine"):
                check_reason(s, "conflict")


def test_markdown_table_lists_every_legal_move() -> None:
    md = transitions_markdown()
    lines = md.splitlines()
    assert lines[0] == "| from | to | when |"
    rows = [ln for ln in lines[2:] if ln.startswith("| ")]
    assert len(rows) == len(list(legal_pairs())) == sum(len(v) for v in TRANSITIONS.values())
    assert "| `applied` | `queued` |" in md
    assert "| *(enters)* | `quarantined` |" in md
    assert all(r.count("|") == 4 and not r.endswith("|  |") for r in rows)
    for r in REASONS:
        assert f"`{r}`" in md


def test_states_and_reasons_are_enums_spelled_like_the_refs() -> None:
    assert [s.value for s in State] == list(STATES)
    assert State("rolled-back") is State.ROLLED_BACK and State.ROLLED_BACK == "rolled-back"
    assert f"{State.QUEUED}" == "queued" and f"{Reason.BAD_TREE}" == "bad-tree"
    assert {State.COMMITTED: 1}["committed"] == 1  # hashes like its string
    check_transition(State.QUEUED, State.APPLIED)
    check_reason(State.QUARANTINED, Reason.PROTECTED_PATH)


def test_attempt_rules_are_data() -> None:
    assert set(ATTEMPTS) <= {(f, t) for f, tos in TRANSITIONS.items() if f for t in tos}
    # entering the ledger: any attempt
    check_attempt("w", None, "created", 7, 0)
    for (frm, to), rule in ATTEMPTS.items():
        check_attempt("w", frm, to, 3, 2)  # a new attempt is allowed here
        if rule is AttemptRule.GROWS:
            with pytest.raises(IllegalTransition, match="is a new attempt; attempt must be > 2"):
                check_attempt("w", frm, to, 2, 2)
        else:
            check_attempt("w", frm, to, 2, 2)
    for frm, tos in TRANSITIONS.items():
        for to in tos:
            if frm is None:
                continue
            with pytest.raises(IllegalTransition, match="older than its current attempt 2"):
                check_attempt("w", frm, to, 1, 2)
            if (frm, to) not in ATTEMPTS:
                check_attempt("w", frm, to, 2, 2)
                with pytest.raises(IllegalTransition, match="cannot start attempt 3"):
                    check_attempt("w", frm, to, 3, 2)
