"""The workstream state machine, as data: states, legal transitions, attempt rules, reasons.

The tables are the single source of truth: the writer checks every transition (and its attempt
number) against them, fsck checks recorded history against them, and ``transitions_markdown()``
renders them for the README.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from uet_git.errors import UetError


class State(StrEnum):
    """A workstream's state; the value is what refs and trailers spell."""

    CREATED = "created"
    VALIDATED = "validated"
    QUEUED = "queued"
    APPLIED = "applied"
    VERIFIED = "verified"
    COMMITTED = "committed"
    QUARANTINED = "quarantined"
    BLOCKED = "blocked"
    ROLLED_BACK = "rolled-back"
    DROPPED = "dropped"


class Reason(StrEnum):
    """Why a workstream is quarantined (the closed set of DESIGN.md, plus the gate's codes)."""

    TOOL_FAILED = "tool-failed"
    TOOL_TIMEOUT = "tool-timeout"
    EMPTY = "empty"
    SCOPE_VIOLATION = "scope-violation"
    TOO_LARGE = "too-large"
    CONFLICT = "conflict"
    VERIFY_FAILED = "verify-failed"
    HOOK_FAILED = "hook-failed"
    DEPENDENCY_QUARANTINED = "dependency-quarantined"
    BREAKER_OPEN = "breaker-open"
    INTERNAL_ERROR = "internal-error"
    # a tool changed git config or refs outside refs/uet/ (or the hooks)
    TAMPERED = "tampered"
    # a patch touches uet.toml, .uet/** or a [verify] protected glob without may_change_checks
    PROTECTED_PATH = "protected-path"
    # a patch tree that `git fsck --strict` would reject
    BAD_TREE = "bad-tree"


class AttemptRule(StrEnum):
    """What a move does to the attempt number."""

    STAYS = "stays"  # the same attempt goes on
    MAY_GROW = "may-grow"  # the same attempt, or a new one
    GROWS = "grows"  # a new attempt: the number must grow


S = State
STATES: tuple[State, ...] = tuple(State)
REASONS: tuple[Reason, ...] = tuple(Reason)

# None = entering the ledger (a workstream has no state yet).
TRANSITIONS: dict[State | None, frozenset[State]] = {
    None: frozenset({S.CREATED, S.QUARANTINED, S.BLOCKED}),
    S.CREATED: frozenset({S.VALIDATED, S.QUARANTINED}),
    S.VALIDATED: frozenset({S.QUEUED, S.QUARANTINED}),
    S.QUEUED: frozenset({S.APPLIED, S.QUARANTINED, S.BLOCKED}),
    S.APPLIED: frozenset({S.VERIFIED, S.QUARANTINED, S.QUEUED}),
    S.VERIFIED: frozenset({S.COMMITTED, S.QUEUED, S.QUARANTINED}),
    S.COMMITTED: frozenset({S.ROLLED_BACK}),
    S.QUARANTINED: frozenset({S.DROPPED, S.QUEUED, S.CREATED, S.QUARANTINED}),
    S.BLOCKED: frozenset({S.QUEUED, S.DROPPED, S.CREATED, S.QUARANTINED}),
    S.ROLLED_BACK: frozenset(),
    S.DROPPED: frozenset(),
}

# The moves that may start a new attempt; every other move keeps the attempt number, and a
# workstream entering the ledger starts at any attempt >= 1.
ATTEMPTS: dict[tuple[State, State], AttemptRule] = {
    (S.QUARANTINED, S.CREATED): AttemptRule.GROWS,
    (S.QUARANTINED, S.QUARANTINED): AttemptRule.GROWS,
    (S.BLOCKED, S.CREATED): AttemptRule.MAY_GROW,
    (S.BLOCKED, S.QUARANTINED): AttemptRule.MAY_GROW,
}

# Why each move exists (the README table shows it).
WHY: dict[tuple[State | None, State], str] = {
    (None, S.CREATED): "the tool produced a patch",
    (None, S.QUARANTINED): "the tool failed, timed out, changed nothing, tampered with the "
                           "repository, or the breaker is open",
    (None, S.BLOCKED): "a dependency is quarantined, so the tool never ran",
    (S.CREATED, S.VALIDATED): "scope, size and sanity checks passed",
    (S.CREATED, S.QUARANTINED): "scope-violation, protected-path, bad-tree, too-large, or the "
                                "worker's acceptance failed",
    (S.VALIDATED, S.QUEUED): "waiting for the integrator",
    (S.VALIDATED, S.QUARANTINED): "the worker's acceptance commands failed",
    (S.QUEUED, S.APPLIED): "3-way merge onto the integration tip made a candidate",
    (S.QUEUED, S.QUARANTINED): "the merge conflicted",
    (S.QUEUED, S.BLOCKED): "a dependency was quarantined while this one waited",
    (S.APPLIED, S.VERIFIED): "acceptance and pre-merge hooks passed on the candidate",
    (S.APPLIED, S.QUARANTINED): "verification or a hook failed on the candidate",
    (S.APPLIED, S.QUEUED): "the integration tip moved; re-apply",
    (S.VERIFIED, S.COMMITTED): "the integration ref fast-forwarded to the candidate",
    (S.VERIFIED, S.QUEUED): "the integration tip moved; re-apply",
    (S.VERIFIED, S.QUARANTINED): "committing failed",
    (S.COMMITTED, S.ROLLED_BACK): "a user rolled the run back",
    (S.QUARANTINED, S.DROPPED): "a user dropped it",
    (S.QUARANTINED, S.QUEUED): "a user asked to re-apply the same patch",
    (S.QUARANTINED, S.CREATED): "a new attempt produced a patch",
    (S.QUARANTINED, S.QUARANTINED): "a new attempt failed at once (attempt number grows)",
    (S.BLOCKED, S.QUEUED): "the dependency was retried and committed; the patch exists",
    (S.BLOCKED, S.DROPPED): "a user dropped it",
    (S.BLOCKED, S.CREATED): "the dependency was retried and committed; the tool ran",
    (S.BLOCKED, S.QUARANTINED): "the dependency was retried; this tool then failed",
}

# Final outcomes: nothing more happens to the workstream in this run unless a user acts
# (committed can still be rolled back). Quarantined is NOT terminal: it waits for a user.
TERMINAL: frozenset[State] = frozenset({S.COMMITTED, S.ROLLED_BACK, S.DROPPED})

# States whose ref points at the candidate (the patch merged onto the integration tip).
CANDIDATE_STATES: frozenset[State] = frozenset({S.APPLIED, S.VERIFIED, S.COMMITTED})
# States that need a patch commit (given, or carried from earlier in the same attempt).
PATCH_STATES: frozenset[State] = frozenset({
    S.CREATED, S.VALIDATED, S.QUEUED, S.APPLIED, S.VERIFIED, S.COMMITTED})
# States that keep the attempt's candidate when the move names none.
KEEPS_CANDIDATE: frozenset[State] = frozenset({S.VERIFIED, S.COMMITTED, S.ROLLED_BACK})


class IllegalTransition(UetError):
    """A move the state machine does not allow; nothing was written."""


def check_state(state: str) -> State:
    try:
        return State(state)
    except ValueError:
        raise IllegalTransition(
            f"unknown state {state!r} (known: {', '.join(STATES)})") from None


def check_transition(frm: str | None, to: str) -> None:
    """Raise ``IllegalTransition`` unless ``frm -> to`` is in the table."""
    to_s = check_state(to)
    frm_s = None if frm is None else check_state(frm)
    if to_s not in TRANSITIONS[frm_s]:
        allowed = ", ".join(sorted(TRANSITIONS[frm_s])) or "nothing (final state)"
        shown = "none" if frm_s is None else frm_s.value
        raise IllegalTransition(
            f"illegal transition {shown} -> {to_s.value} (from {shown}: {allowed})")


def check_reason(to: str, reason: str | None) -> None:
    """Quarantine needs a reason from ``REASONS``; every other state takes none."""
    if to == State.QUARANTINED:
        if not reason:
            raise IllegalTransition("quarantine needs a reason code")
        if reason not in REASONS:
            raise IllegalTransition(
                f"unknown reason {reason!r} (known: {', '.join(REASONS)})"
            )
    elif reason is not None:
        raise IllegalTransition(f"only quarantine takes a reason; {to} got {reason!r}")


def attempt_rule(frm: str | None, to: str) -> AttemptRule | None:
    """What ``frm -> to`` does to the attempt number; None when entering the ledger (any)."""
    if frm is None:
        return None
    return ATTEMPTS.get((State(frm), State(to)), AttemptRule.STAYS)


def check_attempt(ws: str, frm: str | None, to: str, attempt: int, current: int) -> None:
    """Raise ``IllegalTransition`` unless ``attempt`` is legal for ``frm -> to`` when the
    workstream is at attempt ``current`` (0 = none yet)."""
    rule = attempt_rule(frm, to)
    if rule is None:
        return
    if attempt < current:
        raise IllegalTransition(
            f"{ws}: attempt {attempt} is older than its current attempt {current}")
    if attempt > current and rule is AttemptRule.STAYS:
        raise IllegalTransition(
            f"{ws}: {frm} -> {to} cannot start attempt {attempt} (current attempt {current})")
    if attempt == current and rule is AttemptRule.GROWS:
        raise IllegalTransition(
            f"{ws}: {frm} -> {to} is a new attempt; attempt must be > {current}")


def legal_pairs() -> Iterable[tuple[State | None, State]]:
    for frm, tos in TRANSITIONS.items():
        for to in sorted(tos, key=STATES.index):
            yield frm, to


def transitions_markdown() -> str:
    """The transition table as a markdown table (for the README)."""
    rows = ["| from | to | when |", "|---|---|---|"]
    for frm, to in legal_pairs():
        shown = "*(enters)*" if frm is None else f"`{frm}`"
        rows.append(f"| {shown} | `{to}` | {WHY.get((frm, to), '')} |")
    rows.append("")
    rows.append("Quarantine reasons: " + ", ".join(f"`{r}`" for r in REASONS) + ".")
    rows.append("Final states: " + ", ".join(f"`{s}`" for s in STATES if not TRANSITIONS[s])
                + "; `committed` can only be rolled back.")
    return "\n".join(rows) + "\n"
