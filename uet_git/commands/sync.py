"""`uet push` / `uet fetch`: copy runs' refs between repositories without breaking the ledger.

A plain refspec (``refs/uet/*:refs/uet/*``) is wrong for uet's refs: a state change made
elsewhere moves a workstream's state ref to another name (``refs/uet/<state>/RUN/WS``), so the
old name survives next to the new one, and a state ref replaced by a non-fast-forward is
refused. Here, per run, on the destination:

- the ledger ref only fast-forwards (a diverged ledger is refused, never overwritten; a
  destination already ahead is left alone, the run is skipped);
- patch refs never move (a differing one is refused; new ones are created);
- the integration ref fast-forwards, or moves to a non-descendant only when the ledger
  commits being brought in record a ``run: rebase``;
- the state refs are made to equal the source's, deletions included.

Ancestry is checked on local objects: what the other side holds is first fetched below a
private namespace (``refs/uet-incoming/<nonce>/``), removed again afterwards. Fetch applies one
local ref transaction; push sends one ``git push --atomic`` with a lease on every ref, so
neither side ever holds half a transition.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from uet_git.errors import UetError
from uet_git.gitrepo import odb
from uet_git.gitrepo.merge import is_ancestor, rev_list
from uet_git.gitrepo.remote import PushUpdate, fetch_into, ls_remote, push_atomic
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.expected import REBASE_EVENT
from uet_git.ledger.layout import ROOT, integration_ref, ledger_ref, parse_ref
from uet_git.ledger.lock import RunLock

INCOMING = "refs/uet-incoming/"


@dataclass
class RunPlan:
    """What one run's sync changes on the destination: ``(ref, new or None, old or None)``."""

    run: str
    updates: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    note: str | None = None  # why nothing is done for this run


@dataclass
class SyncResult:
    plans: list[RunPlan]

    def lines(self, verb: str) -> list[str]:
        out = []
        for p in self.plans:
            if p.note:
                out.append(f"{p.run}: {p.note}")
            elif p.updates:
                n = len(p.updates)
                out.append(f"{p.run}: {verb} {n} ref{'s' * (n != 1)}")
            else:
                out.append(f"{p.run}: up to date")
        return out


def by_run(refs: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """uet refs grouped by run. Left out: candidates (local scratch) and inbox refs (how a
    worker's patch reached the coordinator; once recorded, the patch ref carries it)."""
    out: dict[str, dict[str, str]] = {}
    for ref, oid in refs.items():
        p = parse_ref(ref)
        if p is not None and p.kind not in ("candidate", "inbox"):
            out.setdefault(p.run, {})[ref] = oid
    return out


def select_runs(available: Sequence[str], wanted: Sequence[str], where: str) -> list[str]:
    """``wanted`` (unique prefixes work) among ``available``; all of them when none given."""
    if not wanted:
        return sorted(available)
    chosen = []
    for w in wanted:
        hits = [r for r in available if r == w] or [r for r in available if r.startswith(w)]
        if not hits:
            raise UetError(f"run {w!r}: not found in {where}")
        if len(hits) > 1:
            raise UetError(f"run {w!r}: ambiguous in {where} ({', '.join(sorted(hits)[:3])}...)")
        chosen.append(hits[0])
    return sorted(set(chosen))


def _records_rebase(repo: Repo, old_ledger: str | None, new_ledger: str) -> bool:
    span = f"{old_ledger}..{new_ledger}" if old_ledger else new_ledger
    for oid in rev_list(repo, span):
        info = odb.get_commit(repo, oid)
        if info.subject.startswith(REBASE_EVENT) and "Uet-Onto" in parse_trailers(info.message):
            return True
    return False


def plan_run(repo: Repo, run: str, src: Mapping[str, str], dst: Mapping[str, str],
             src_name: str, dst_name: str) -> RunPlan:
    """The destination updates that make ``dst`` (one run's refs) follow ``src``; every object
    both name must be in ``repo``. Raises a one-line UetError for what must be refused."""
    plan = RunPlan(run)
    lref, iref = ledger_ref(run), integration_ref(run)
    s_led, d_led = src.get(lref), dst.get(lref)
    if s_led is None:
        plan.note = f"no ledger in {src_name}; left alone"
        return plan
    if d_led is not None and d_led != s_led:
        if is_ancestor(repo, s_led, d_led):
            plan.note = f"{dst_name} is ahead of {src_name}; left alone"
            return plan
        if not is_ancestor(repo, d_led, s_led):
            raise UetError(f"run {run}: the ledger in {src_name} and in {dst_name} have diverged "
                           f"({s_led[:12]} vs {d_led[:12]}); refusing to overwrite it")
    s_int, d_int = src.get(iref), dst.get(iref)
    if (s_int is not None and d_int is not None and s_int != d_int
            and not is_ancestor(repo, d_int, s_int)
            and not _records_rebase(repo, d_led, s_led)):
        raise UetError(f"run {run}: {iref} in {src_name} does not descend from {dst_name}'s "
                       "and no rebase is recorded in the ledger; refusing")
    for ref, oid in sorted(src.items()):
        p = parse_ref(ref)
        assert p is not None
        old = dst.get(ref)
        if p.kind == "patch" and old is not None and old != oid:
            raise UetError(f"run {run}: patch ref {ref} differs between {src_name} and "
                           f"{dst_name} ({oid[:12]} vs {old[:12]}); patch refs never move")
        if old != oid:
            plan.updates.append((ref, oid, old))
    for ref, old in sorted(dst.items()):
        p = parse_ref(ref)
        if p is not None and p.kind == "state" and ref not in src:
            plan.updates.append((ref, None, old))
    return plan


@contextmanager
def _incoming(repo: Repo) -> Iterator[str]:
    """A private ref namespace, deleted on the way out whatever happens."""
    ns = f"{INCOMING}{secrets.token_hex(4)}/"
    try:
        yield ns
    finally:
        left = repo.list_refs(ns)
        if left:
            tx = repo.transaction()
            for ref, oid in left.items():
                tx.delete(ref, oid)
            tx.commit()


@contextmanager
def _locked(repo: Repo, runs: Sequence[str]) -> Iterator[None]:
    """Hold every run's writer lock: no transition is half-read or half-replaced."""
    locks: list[RunLock] = []
    try:
        for run in runs:
            locks.append(RunLock.acquire(repo, run))
        yield
    finally:
        for lock in locks:
            lock.release()


def fetch(repo: Repo, remote: str, runs: Sequence[str] = ()) -> SyncResult:
    """Bring ``runs`` (default: every run ``remote`` has) from ``remote`` into ``repo``."""
    remote_refs = by_run(ls_remote(remote, f"{ROOT}*", repo=repo))
    chosen = select_runs(list(remote_refs), runs, remote)
    wanted = [ref for run in chosen for ref in remote_refs[run]]
    plans: list[RunPlan] = []
    with _locked(repo, chosen), _incoming(repo) as ns:
        got = by_run(fetch_into(repo, remote, wanted, ns))
        local = by_run(repo.list_refs(ROOT))
        for run in chosen:
            plans.append(plan_run(repo, run, got.get(run, {}), local.get(run, {}),
                                  remote, "this repository"))
        tx = repo.transaction()
        for plan in plans:
            for ref, new, old in plan.updates:
                if new is None:
                    assert old is not None
                    tx.delete(ref, old)
                else:
                    tx.update(ref, new, old)
        tx.commit()
    return SyncResult(plans)


def push(repo: Repo, remote: str, runs: Sequence[str] = ()) -> SyncResult:
    """Send ``runs`` (default: every local run) from ``repo`` to ``remote`` in one atomic push."""
    local_all = by_run(repo.list_refs(ROOT))
    chosen = select_runs(list(local_all), runs, "this repository")
    plans: list[RunPlan] = []
    with _locked(repo, chosen), _incoming(repo) as ns:
        local = by_run(repo.list_refs(ROOT))
        remote_refs = by_run(ls_remote(remote, f"{ROOT}*", repo=repo))
        # Their ledger and integration tips, to check ancestry here.
        tips = [ref for run in chosen for ref in remote_refs.get(run, {})
                if ref in (ledger_ref(run), integration_ref(run))]
        fetch_into(repo, remote, tips, ns)
        updates: list[PushUpdate] = []
        for run in chosen:
            plan = plan_run(repo, run, local.get(run, {}), remote_refs.get(run, {}),
                            "this repository", remote)
            plans.append(plan)
            updates += [PushUpdate(ref, new, old) for ref, new, old in plan.updates]
        push_atomic(repo, remote, updates)
    return SyncResult(plans)


def remote_states(url: str, run: str | None) -> tuple[str | None, dict[str, str]]:
    """``(run, {ws: state})`` read from the remote's ref names alone (no clone, no objects):
    ``run`` (a unique prefix works; default the latest run there), None when it has no run."""
    runs = by_run(ls_remote(url, f"{ROOT}*"))
    if not runs:
        return None, {}
    chosen = select_runs(list(runs), [run] if run else [], url)[-1]
    out: dict[str, str] = {}
    for ref in runs[chosen]:
        p = parse_ref(ref)
        if p is not None and p.kind == "state" and p.ws is not None and p.state is not None:
            out[p.ws] = p.state
    return chosen, dict(sorted(out.items()))
