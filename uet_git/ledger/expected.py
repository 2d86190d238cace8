"""The refs a run must have, from its ledger history alone.

The ledger is the truth; refs are an index into it. Replaying the history oldest first gives,
for every ref of the run, the oid it must hold:

- ``refs/uet/ledger/RUN``: the tip the history was read from;
- ``refs/uet/<state>/RUN/WS``: one per workstream, named after the state of its last
  transition, pointing to the candidate in applied/verified/committed, else to the attempt's
  patch, else to the ledger commit that recorded the move (``state_target``);
- ``refs/uet/patches/RUN/WS/N``: the patch recorded for attempt N;
- ``refs/uet/integration/RUN``: the tip recorded by the last commit carrying
  ``Uet-Integration`` (a ``committed`` transition or a ``run: rebase`` event), else the base.

A ``run: gc`` event lists the refs ``uet gc`` removed in its body (one ``refs/uet/...`` per
line): from then on they are not expected, until a later transition creates them again.
The writer's repair (``Ledger.open``, ``repair.repair``) and ``uet fsck`` both use this.
"""

from __future__ import annotations

from collections.abc import Mapping

from uet_git.ledger import layout
from uet_git.ledger.log import PENDING, Event, LedgerLog, WsRecord, advance, oid_or_none
from uet_git.ledger.states import CANDIDATE_STATES, STATES

GC_EVENT = "run: gc"
REBASE_EVENT = "run: rebase"  # re-integration onto a moved target: a new Uet-Integration


def state_target(rec: WsRecord, ledger_commit: str) -> str:
    """Where the state ref of ``rec`` points: the candidate in applied/verified/committed (and
    in quarantined when the candidate was judged), else the patch, else the ledger commit that
    recorded the move."""
    if rec.state in CANDIDATE_STATES and rec.candidate:
        return rec.candidate
    if rec.state == "quarantined" and rec.candidate:  # judged on it: kept as its evidence
        return rec.candidate
    return rec.patch or ledger_commit


def gc_removed(e: Event) -> list[str]:
    """The refs a ``run: gc`` event says it removed (empty for any other event)."""
    if e.ws is not None or not e.subject.startswith(GC_EVENT):
        return []
    return [ln.strip() for ln in e.summary.splitlines() if ln.strip().startswith(layout.ROOT)]


def recorded_integration(log: LedgerLog) -> str | None:
    """The integration tip the ledger recorded last (``Uet-Integration``), else the base."""
    for e in reversed(log.events):
        tip = oid_or_none(e.trailers.get("Uet-Integration"))
        if tip:
            return tip
    return log.base


def expected_refs(log: LedgerLog) -> dict[str, str]:
    """``{ref: oid}`` of every ref the run must have now (see the module doc)."""
    run = log.run
    iref = layout.integration_ref(run)
    want: dict[str, str] = {layout.ledger_ref(run): log.tip}
    if log.base:
        want[iref] = log.base
    recs: dict[str, WsRecord] = {}
    for e in log.events:
        if e.is_transition and e.to in STATES and e.ws is not None:
            rec = recs.get(e.ws)
            if rec is None:
                rec = recs[e.ws] = WsRecord(ws=e.ws, state=PENDING)
            else:
                want.pop(layout.state_ref(rec.state, run, e.ws), None)
            advance(rec, e)
            want[layout.state_ref(rec.state, run, e.ws)] = state_target(rec, e.oid)
            if e.attempt is not None and e.attempt >= 1 and e.patch:
                want[layout.patch_ref(run, e.ws, e.attempt)] = e.patch
        tip = oid_or_none(e.trailers.get("Uet-Integration"))
        if tip:
            want[iref] = tip
        for name in gc_removed(e):
            want.pop(name, None)
    return want


Fix = tuple[str, str | None, str | None, str]  # (ref, old or None, new or None, why)


def disagreements(log: LedgerLog, refs: Mapping[str, str]) -> list[Fix]:
    """What makes ``refs`` (every ref of the run) agree with ``expected_refs(log)``, one fix
    per ref, sorted by ref name: ``(ref, old, new, why)``; new None = delete, old None =
    create. An integration ref the ledger does not expect (``uet gc`` removed it) is left
    alone: the next move recreates it."""
    run = log.run
    want = expected_refs(log)
    iref = layout.integration_ref(run)
    known = {e.ws for e in log.transitions()}
    fixes: list[Fix] = []
    for name in sorted(set(refs) | set(want)):
        have, new = refs.get(name), want.get(name)
        if have == new or (name == iref and new is None):
            continue
        p = layout.parse_ref(name)
        if p is None or p.run != run:
            continue
        if new is None:
            assert have is not None
            if p.kind == "state":
                why = (f"{p.ws}: {name} disagrees with the ledger" if p.ws in known
                       else f"{p.ws}: {name} has no ledger transition")
            elif p.kind == "patch":
                why = f"{name}: attempt not in the ledger"
            else:
                why = f"{name}: not expected by the ledger"
        elif have is None:
            why = f"{name} is missing (the ledger says {new[:12]})"
        else:
            why = f"{name} points to {have[:12]}, the ledger says {new[:12]}"
        fixes.append((name, have, new, why))
    return fixes
