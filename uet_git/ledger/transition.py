"""One workstream transition as the writer prepares it: checked against the state the
transitions before it leave (the writer's memory plus those earlier in the same transaction,
``Sim``), its ledger commit written (subject ``WS: from -> to``, a short body, ``Uet-*``
trailers, its evidence under ``evidence/WS/N/``), and what the refs become; then the ONE ref
transaction that moves every ref a group of them changes, each with its old value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from uet_git.errors import UetError
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.odb import CommitInfo, MissingObject, Person, get_commit, has_object
from uet_git.gitrepo.refs import RefTransaction
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import one_line
from uet_git.ledger import crash, layout
from uet_git.ledger.evidence import evidence_files, evidence_prefix
from uet_git.ledger.keepalive import Written
from uet_git.ledger.log import WsRecord
from uet_git.ledger.memory import Memory
from uet_git.ledger.states import (
    CANDIDATE_STATES,
    KEEPS_CANDIDATE,
    PATCH_STATES,
    check_attempt,
    check_reason,
    check_transition,
)
from uet_git.ledger.transact import RefWriter

RESERVED_TRAILERS = frozenset({
    "Uet-Run", "Uet-Workstream", "Uet-Attempt", "Uet-From", "Uet-To", "Uet-Patch",
    "Uet-Candidate", "Uet-Reason", "Uet-Base", "Uet-Target", "Uet-Integration",
    "Uet-Onto", "Uet-Previous-Integration",
})
_TRAILER_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


@dataclass(frozen=True)
class Step:
    """One transition of ``Ledger.record_chain`` (the arguments of ``Ledger.record``)."""

    to: str
    patch: str | None = None
    candidate: str | None = None
    reason: str | None = None
    summary: str = ""
    evidence: Mapping[str, bytes] | None = None
    integration: str | None = None
    trailers: Mapping[str, str] | None = None


@dataclass
class Sim:
    """The writer's memory as the transitions prepared so far for one transaction leave it
    (overlays: only what they change)."""

    tip: str
    tree: str
    integration: str
    states: dict[str, WsRecord] = field(default_factory=dict)
    patches: dict[tuple[str, int], str] = field(default_factory=dict)  # patch refs to create
    verify: set[tuple[str, int]] = field(default_factory=set)  # patch refs to check
    # (author, committer) of the transaction's commits: asked once per transaction (each ask
    # looks at git's config files and environment), the same for all of them as for commits
    # decided at one moment.
    who: tuple[Person, Person] | None = None

    @classmethod
    def of(cls, mem: Memory) -> Sim:
        return cls(mem.tip, mem.tree, mem.integration)

    def copy(self) -> Sim:
        return replace(self, states=dict(self.states), patches=dict(self.patches),
                       verify=set(self.verify))


def extra_trailers(trailers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """A caller's own trailers, checked: never one the ledger writes itself."""
    out: list[tuple[str, str]] = []
    for k, v in (trailers or {}).items():
        if not _TRAILER_KEY.match(k):
            raise UetError(f"bad trailer key {k!r}: expected letters, digits and '-'")
        if k in RESERVED_TRAILERS:
            raise UetError(f"trailer {k} is written by the ledger itself")
        out.append((k, one_line(v)))
    return out


def commit_info(repo: Repo, value: str, what: str) -> CommitInfo:
    """The commit ``value`` names, or a one-line UetError saying what it is instead."""
    try:
        return get_commit(repo, str(value), what=what)
    except MissingObject:
        kind = "is not a commit" if has_object(repo, str(value)) else \
            "is not an object in this repository"
        raise UetError(f"{what} {value} {kind}") from None


def default_summary(ws: str, frm: str | None, to: str, attempt: int,
                    reason: str | None) -> str:
    move = f"entered the ledger as {to}" if frm is None else f"moved from {frm} to {to}"
    why = f" ({reason})" if reason else ""
    return f"{ws} {move}{why}, attempt {attempt}."


def prepare(rw: RefWriter, sim: Sim, ws: str, step: Step, attempt: int) -> Written:
    """Check one transition against the state ``sim`` holds (the writer's memory plus the
    transitions before it in this transaction), write its objects, advance ``sim``."""
    repo, mem = rw.repo, rw.mem
    to, reason = step.to, step.reason
    cur = sim.states[ws] if ws in sim.states else mem.states.get(ws)
    frm = cur.state if cur is not None else None
    check_transition(frm, to)
    check_reason(to, reason)
    cur_attempt = cur.attempt if cur is not None and cur.attempt else 0
    check_attempt(ws, frm, to, attempt, cur_attempt)
    same_attempt = cur is not None and attempt == cur_attempt
    named: dict[str, CommitInfo] = {}
    patch_oid = cand_oid = integ_oid = None
    if step.patch:
        info = commit_info(repo, step.patch, "patch")
        patch_oid, named[info.oid] = info.oid, info
    if step.candidate:
        info = commit_info(repo, step.candidate, "candidate")
        cand_oid, named[info.oid] = info.oid, info
    if patch_oid is None and same_attempt and cur is not None:
        patch_oid = cur.patch
    if cand_oid is None and same_attempt and cur is not None and to in KEEPS_CANDIDATE:
        cand_oid = cur.candidate
    if to in PATCH_STATES and patch_oid is None:
        raise UetError(f"{ws}: state {to} needs a patch commit")
    if to in CANDIDATE_STATES and cand_oid is None:
        raise UetError(f"{ws}: state {to} needs a candidate commit")
    key = (ws, attempt)
    old_patch = sim.patches.get(key) or mem.patches.get(key)
    if patch_oid and old_patch and old_patch != patch_oid:
        raise UetError(f"{ws}: attempt {attempt} already has patch {old_patch[:12]}; "
                       "patch refs never move (use a new attempt)")
    integ_parents: tuple[str, ...] = ()
    if step.integration:
        info = commit_info(repo, step.integration, "integration")
        integ_oid, named[info.oid] = info.oid, info
        integ_parents = info.parents
    # A commit made on the tip (the queue's usual candidate) descends from it without a walk.
    if integ_oid and integ_oid != sim.integration and sim.integration not in integ_parents \
            and not is_ancestor(repo, sim.integration, integ_oid):
        raise UetError(f"integration ref of run {mem.run} only fast-forwards: "
                       f"{integ_oid[:12]} does not contain {sim.integration[:12]}")
    moves_integration = bool(integ_oid and integ_oid != sim.integration)
    extra = extra_trailers(step.trailers)

    # -- objects
    files = evidence_files(evidence_prefix(ws, attempt, mem.fanout), step.evidence)
    tr: list[tuple[str, str]] = [
        ("Uet-Run", mem.run), ("Uet-Workstream", ws), ("Uet-Attempt", str(attempt)),
        ("Uet-From", frm or "none"), ("Uet-To", to),
    ]
    if patch_oid:
        tr.append(("Uet-Patch", patch_oid))
    if cand_oid:
        tr.append(("Uet-Candidate", cand_oid))
    if reason:
        tr.append(("Uet-Reason", reason))
    if moves_integration:
        assert integ_oid is not None
        tr.append(("Uet-Integration", integ_oid))
    tr.extend(extra)
    body = step.summary.strip() or default_summary(ws, frm, to, attempt, reason)
    if sim.who is None:
        sim.who = rw.identities()
    written = rw.new_commit(f"{ws}: {frm or 'none'} -> {to}", body, tr, files,
                            parent=sim.tip, tree=sim.tree, who=sim.who)
    written.named = named
    crash.crash_point("after-objects", ws, (to,))

    # -- what the refs become (moved by the caller's one transaction)
    target = cand_oid if to in CANDIDATE_STATES else patch_oid or written.commit
    if to == "quarantined" and same_attempt and cur is not None and cur.candidate:
        # Judged on its candidate: the state ref keeps that candidate (the evidence of
        # the verdict) reachable; the patch has its own ref. ledger.expected agrees.
        target = cur.candidate
    assert target is not None
    when = written.committer.time
    new = WsRecord(ws=ws, state=to, attempt=attempt, reason=reason, patch=patch_oid,
                   candidate=cand_oid if cand_oid else
                   (cur.candidate if same_attempt and cur is not None else None),
                   started=cur.started if cur is not None else when, updated=when,
                   ref=layout.state_ref(to, mem.run, ws), target=target)
    if new.started is not None:
        new.duration = when - new.started
    sim.states[ws] = new
    sim.tip, sim.tree = written.commit, written.tree
    if patch_oid and old_patch is None:
        sim.patches[key] = patch_oid
    elif step.patch is not None and old_patch == patch_oid and key in mem.patches:
        sim.verify.add(key)  # given again explicitly: make sure nobody moved it
    if moves_integration:
        assert integ_oid is not None
        sim.integration = integ_oid
    return written


def group_transaction(rw: RefWriter, sim: Sim) -> RefTransaction:
    """The ONE ref transaction that takes the refs from the writer's memory to ``sim``: the
    ledger ref from the old tip to the last commit, each workstream's state ref from its
    state before to its state after, the new patch refs, the integration ref; every one with
    its old value."""
    mem, run = rw.mem, rw.mem.run
    tx = rw.transaction()
    tx.update(layout.ledger_ref(run), sim.tip, mem.tip)
    for ws, new in sim.states.items():
        cur = mem.states.get(ws)
        assert new.ref is not None and new.target is not None
        if cur is not None and cur.ref is not None and cur.target is not None:
            if cur.ref == new.ref:
                tx.update(new.ref, new.target, cur.target)
            else:
                tx.delete(cur.ref, cur.target)
                tx.create(new.ref, new.target)
        else:
            tx.create(new.ref, new.target)
    for (ws, n), oid in sim.patches.items():
        tx.create(layout.patch_ref(run, ws, n), oid)
    for ws, n in sim.verify:
        tx.verify(layout.patch_ref(run, ws, n), mem.patches[(ws, n)])
    if sim.integration != mem.integration:
        tx.update(layout.integration_ref(run), sim.integration,
                  mem.integration if mem.integration_ref else None)
    return tx


def remember(mem: Memory, sim: Sim) -> None:
    """The memory after ``group_transaction(sim)`` committed."""
    mem.states.update(sim.states)
    mem.patches.update(sim.patches)
    if sim.integration != mem.integration:
        mem.integration, mem.integration_ref = sim.integration, True
    mem.tip, mem.tree = sim.tip, sim.tree
