"""Words and figures every command prints the same way (the CLI, the ledger's own summaries,
the dry run): ``plural(1, "changed path")`` is ``1 changed path``, ``plural(2, "fix",
"fixes")`` ``2 fixes``; ``all_counts`` is the ``counts`` object of every JSON output, each
state present, zeros included. Light on purpose: the live view imports it."""

from __future__ import annotations

from collections.abc import Mapping

from uet_git.ledger.states import STATES

# Not a ledger state: a workstream of the plan that has no ledger transition yet.
PENDING = "pending"


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def all_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Every ledger state and ``pending``, in the states' order, zeros included (and any other
    key ``counts`` has, after them): a reader of the JSON never meets a missing key."""
    out = {s: int(counts.get(s, 0)) for s in (*STATES, PENDING)}
    out.update({k: int(v) for k, v in counts.items() if k not in out})
    return out
