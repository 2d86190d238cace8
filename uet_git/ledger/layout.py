"""Where the ledger lives in git: ref names, run ids, and parsing refs back.

Every kind of ref has a fixed depth below ``refs/uet/``, so no ref is ever a prefix of another
(git cannot hold both ``a`` and ``a/b``)::

    refs/uet/ledger/RUN              the run's ledger branch (append only)
    refs/uet/integration/RUN         base + committed patches (fast-forward only)
    refs/uet/patches/RUN/WS/N        attempt N's patch commit (never moves)
    refs/uet/<state>/RUN/WS          exactly one per workstream: its current state
    refs/uet/candidates/RUN/N        a speculative candidate in flight (engine/queue.py);
                                     deleted when it is committed or discarded
    refs/uet/inbox/RUN/WS/N          attempt N's patch as a remote worker pushed it (the only
                                     refs a worker may write: ``uet serve`` lets a run's token
                                     push nothing else); one per attempt, never moved, pruned
                                     once the coordinator recorded the attempt

``<state>`` is one of ``states.STATES``; none of them is a name in ``KINDS``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from uet_git.errors import UetError
from uet_git.ledger.states import STATES

ROOT = "refs/uet/"
KINDS = ("ledger", "integration", "patches", "candidates", "inbox")
RUN_RE = re.compile(r"^(\d{8})-(\d{6})-([0-9a-f]{4})$")
WS_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
WS_MAX = 100
# The trailer of a rebase event (`uet land --rebase`) naming, comma-separated, the workstreams
# whose patches were already in the new target and were skipped (fsck does not look for them).
ALREADY_APPLIED = "Uet-Already-Applied"
assert not set(KINDS) & set(STATES)


def new_run_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxx`` in UTC: sorts by start time. The 4 hex digits are the
    millisecond (high 10 bits) and 6 random bits, so two runs started in the same second still
    sort in start order (a fast run and the next one often share a second, and "the latest run"
    must be the last one started); runs in the same millisecond differ by the random bits
    (``Ledger.create`` retries a collision)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    suffix = (now.microsecond // 1000) << 6 | secrets.randbelow(64)
    return f"{now:%Y%m%d-%H%M%S}-{suffix:04x}"


def check_run_id(run: str) -> str:
    """Return ``run`` if it is a well-formed run id, else raise a one-line UetError."""
    m = RUN_RE.match(run) if isinstance(run, str) else None
    if m:
        try:
            datetime.strptime(m[1] + m[2], "%Y%m%d%H%M%S")
            return run
        except ValueError:
            pass
    shown = run if isinstance(run, str) and len(run) <= 60 else repr(run)[:60]
    raise UetError(
        f"bad run id {shown!r}: expected YYYYMMDD-HHMMSS-xxxx (e.g. 20261125-101502-3f2a)"
    )


def run_time(run: str) -> datetime:
    """When the run started (from its id), UTC."""
    check_run_id(run)
    return datetime.strptime(run[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)


def check_ws_id(ws: str) -> str:
    """Return ``ws`` if it is safe as a ref component (same rules as the spec's ids)."""
    ok = (isinstance(ws, str) and len(ws) <= WS_MAX and WS_RE.match(ws) is not None
          and ".." not in ws and not ws.endswith(".") and not ws.endswith(".lock"))
    if not ok:
        shown = ws if isinstance(ws, str) and len(ws) <= 60 else repr(ws)[:60]
        raise UetError(f"bad workstream id {shown!r}: expected [a-z0-9][a-z0-9._-]*, "
                       f"at most {WS_MAX} characters, no '..', not ending in '.' or '.lock'")
    return ws


def ledger_ref(run: str) -> str:
    return f"{ROOT}ledger/{run}"


def integration_ref(run: str) -> str:
    return f"{ROOT}integration/{run}"


def patch_ref(run: str, ws: str, n: int) -> str:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise UetError(f"bad attempt number {n!r} for {ws}: expected an integer >= 1")
    return f"{ROOT}patches/{run}/{ws}/{n}"


def candidate_ref(run: str, n: int) -> str:
    return f"{ROOT}candidates/{run}/{n}"


def candidate_prefix(run: str) -> str:
    return f"{ROOT}candidates/{run}/"


def inbox_ref(run: str, ws: str, attempt: int) -> str:
    """Where a remote worker pushes attempt ``attempt`` of ``ws`` (its patch commit)."""
    check_run_id(run)
    check_ws_id(ws)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
        raise UetError(f"bad attempt number {attempt!r} for {ws}: expected an integer >= 1")
    return f"{ROOT}inbox/{run}/{ws}/{attempt}"


def inbox_prefix(run: str) -> str:
    return f"{ROOT}inbox/{run}/"


def state_ref(state: str, run: str, ws: str) -> str:
    if state not in STATES:
        raise UetError(f"unknown state {state!r}")
    return f"{ROOT}{state}/{run}/{ws}"


def state_prefixes(run: str) -> list[str]:
    """``for-each-ref`` prefixes that hold every state ref of ``run``."""
    return [f"{ROOT}{s}/{run}/" for s in STATES]


def patch_prefix(run: str) -> str:
    return f"{ROOT}patches/{run}/"


def _attempt_ok(text: str) -> bool:
    # ASCII digits only (str.isdigit() accepts other scripts' digits), N >= 1, no leading 0:
    # one attempt has exactly one spelling, so "one ref per attempt" holds by name.
    return text.isascii() and text.isdigit() and text[0] != "0"


@dataclass(frozen=True)
class ParsedRef:
    kind: str  # 'ledger' | 'integration' | 'patch' | 'state' | 'candidate' | 'inbox'
    run: str
    ws: str | None = None
    attempt: int | None = None
    state: str | None = None


def parse_ref(name: str) -> ParsedRef | None:
    """``refs/uet/...`` back into its parts; None for anything that is not a uet ref."""
    if not name.startswith(ROOT):
        return None
    parts = name[len(ROOT):].split("/")
    if len(parts) < 2 or not RUN_RE.match(parts[1]):
        return None
    head, run = parts[0], parts[1]
    if head in ("ledger", "integration"):
        return ParsedRef(head, run) if len(parts) == 2 else None
    if head == "patches":
        if len(parts) == 4 and WS_RE.match(parts[2]) and parts[3].isdigit():
            return ParsedRef("patch", run, ws=parts[2], attempt=int(parts[3]))
        return None
    if head == "inbox":
        # Strict: a worker chooses this name, and ``uet serve`` admits a push by it.
        if len(parts) == 4 and WS_RE.match(parts[2]) and _attempt_ok(parts[3]):
            return ParsedRef("inbox", run, ws=parts[2], attempt=int(parts[3]))
        return None
    if head == "candidates":
        if len(parts) == 3 and parts[2].isdigit():
            return ParsedRef("candidate", run, attempt=int(parts[2]))
        return None
    if head in STATES and len(parts) == 3 and WS_RE.match(parts[2]):
        return ParsedRef("state", run, ws=parts[2], state=head)
    return None
