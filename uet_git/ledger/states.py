"""The workstream state machine, as data: states, legal transitions, quarantine reasons.

The table is the single source of truth: the writer checks every transition against it, fsck
checks recorded history against it, and ``transitions_markdown()`` renders it for the README.
"""

from __future__ import annotations

from collections.abc import Iterable

from uet_git.errors import UetError

STATES: tuple[str, ...] = (
    "created", "validated", "queued", "applied", "verified", "committed", "quarantined",
    "blocked", "rolled-back", "dropped",
)

# None = entering the ledger (a workstream has no state yet).
TRANSITIONS: dict[str | None, frozenset[str]] = {
    None: frozenset({"created", "quarantined", "blocked"}),
    "created": frozenset({"validated", "quarantined"}),
    "validated": frozenset({"queued", "quarantined"}),
    "queued": frozenset({"applied", "quarantined", "blocked"}),
    "applied": frozenset({"verified", "quarantined", "queued"}),
    "verified": frozenset({"committed", "queued", "quarantined"}),
    "committed": frozenset({"rolled-back"}),
    "quarantined": frozenset({"dropped", "queued", "created", "quarantined"}),
    "blocked": frozenset({"queued", "dropped", "created", "quarantined"}),
    "rolled-back": frozenset(),
    "dropped": frozenset(),
}

# Why each move exists (the README table shows it).
WHY: dict[tuple[str | None, str], str] = {
    (None, "created"): "the tool produced a patch",
    (None, "quarantined"): "the tool failed, timed out, changed nothing, or the breaker is open",
    (None, "blocked"): "a dependency is quarantined, so the tool never ran",
    ("created", "validated"): "scope, size and sanity checks passed",
    ("created", "quarantined"): "scope-violation, too-large, or the worker's acceptance failed",
    ("validated", "queued"): "waiting for the integrator",
    ("validated", "quarantined"): "the worker's acceptance commands failed",
    ("queued", "applied"): "3-way merge onto the integration tip made a candidate",
    ("queued", "quarantined"): "the merge conflicted",
    ("queued", "blocked"): "a dependency was quarantined while this one waited",
    ("applied", "verified"): "acceptance and pre-merge hooks passed on the candidate",
    ("applied", "quarantined"): "verification or a hook failed on the candidate",
    ("applied", "queued"): "the integration tip moved; re-apply",
    ("verified", "committed"): "the integration ref fast-forwarded to the candidate",
    ("verified", "queued"): "the integration tip moved; re-apply",
    ("verified", "quarantined"): "committing failed",
    ("committed", "rolled-back"): "a user rolled the run back",
    ("quarantined", "dropped"): "a user dropped it",
    ("quarantined", "queued"): "a user asked to re-apply the same patch",
    ("quarantined", "created"): "a new attempt produced a patch",
    ("quarantined", "quarantined"): "a new attempt failed at once (attempt number grows)",
    ("blocked", "queued"): "the dependency was retried and committed; the patch exists",
    ("blocked", "dropped"): "a user dropped it",
    ("blocked", "created"): "the dependency was retried and committed; the tool ran",
    ("blocked", "quarantined"): "the dependency was retried; this tool then failed",
}

# Final outcomes: nothing more happens to the workstream in this run unless a user acts
# (committed can still be rolled back). Quarantined is NOT terminal: it waits for a user.
TERMINAL: frozenset[str] = frozenset({"committed", "rolled-back", "dropped"})

REASONS: tuple[str, ...] = (
    "tool-failed", "tool-timeout", "empty", "scope-violation", "too-large", "conflict",
    "verify-failed", "hook-failed", "dependency-quarantined", "breaker-open", "internal-error",
)

# States whose ref points at the candidate (the patch merged onto the integration tip).
CANDIDATE_STATES: frozenset[str] = frozenset({"applied", "verified", "committed"})


class IllegalTransition(UetError):
    """A move the state machine does not allow; nothing was written."""


def check_state(state: str) -> str:
    if state not in STATES:
        raise IllegalTransition(f"unknown state {state!r} (known: {', '.join(STATES)})")
    return state


def check_transition(frm: str | None, to: str) -> None:
    """Raise ``IllegalTransition`` unless ``frm -> to`` is in the table."""
    check_state(to)
    if frm is not None:
        check_state(frm)
    if to not in TRANSITIONS[frm]:
        allowed = ", ".join(sorted(TRANSITIONS[frm])) or "nothing (final state)"
        shown = "none" if frm is None else frm
        raise IllegalTransition(f"illegal transition {shown} -> {to} (from {shown}: {allowed})")


def check_reason(to: str, reason: str | None) -> None:
    """Quarantine needs a reason from ``REASONS``; every other state takes none."""
    if to == "quarantined":
        if not reason:
            raise IllegalTransition("quarantine needs a reason code")
        if reason not in REASONS:
            raise IllegalTransition(
                f"unknown reason {reason!r} (known: {', '.join(REASONS)})"
            )
    elif reason is not None:
        raise IllegalTransition(f"only quarantine takes a reason; {to} got {reason!r}")


def legal_pairs() -> Iterable[tuple[str | None, str]]:
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
