"""Inbox refs that have served their purpose, and removing them.

A remote worker pushes its patch to ``refs/uet/inbox/RUN/WS/N`` (``layout.inbox_ref``); the
coordinator then records the attempt, and the ledger's own ``refs/uet/patches/RUN/WS/N``
keeps the patch alive from then on. Every ref costs each later push and ref transaction a
little (the files backend reads the ref directory; ``docs/benchmarks.md``, B8), so an inbox
ref goes once it is terminal:

- its attempt's patch ref exists (the coordinator recorded it: the patch is referenced
  elsewhere, whatever the worker pushed), or
- the workstream has a later attempt in the ledger, or the run finished, and the ledger
  expects no patch ref for that attempt that is missing (if one is, ``uet fsck --repair``
  restores it from the objects the inbox ref still keeps).

An inbox ref of an attempt still in flight is never removed. Deletions are compare-and-swap
(an inbox ref never moves, so a mismatch means someone else pruned it) in one transaction.
Nothing is recorded in the ledger: inbox refs are transport, not state.
"""

from __future__ import annotations

from collections.abc import Iterable

from uet_git.errors import UetError
from uet_git.gitrepo.refs import RefConflict, for_each_ref
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.expected import expected_refs
from uet_git.ledger.layout import ROOT, inbox_prefix, parse_ref, patch_prefix, patch_ref
from uet_git.ledger.log import read_ledger


def terminal_inbox_refs(repo: Repo, run: str) -> dict[str, str]:
    """``{inbox ref: oid}`` of ``run`` that may be removed now (see the module docstring)."""
    inbox = for_each_ref(repo, inbox_prefix(run))
    if not inbox:
        return {}
    patches = for_each_ref(repo, patch_prefix(run))
    out: dict[str, str] = {}
    pending: list[tuple[str, str, str, int]] = []
    for name, oid in inbox.items():
        p = parse_ref(name)
        if p is None or p.kind != "inbox" or p.ws is None or p.attempt is None:
            continue  # not a name uet wrote; `uet fsck` reports it
        if patch_ref(run, p.ws, p.attempt) in patches:
            out[name] = oid
        else:
            pending.append((name, oid, p.ws, p.attempt))
    if not pending:
        return out
    try:
        log = read_ledger(repo, run)
    except UetError:
        return out  # no ledger, or a damaged one: keep them (`uet fsck` says why)
    want = expected_refs(log)
    latest: dict[str, int] = {}
    for e in log.transitions():
        if e.ws is not None and e.attempt is not None:
            latest[e.ws] = max(latest.get(e.ws, 0), e.attempt)
    for name, oid, ws, n in pending:
        if patch_ref(run, ws, n) in want:
            continue  # recorded, but its patch ref is missing: this ref keeps the patch
        if log.finished or latest.get(ws, 0) > n:
            out[name] = oid
    return out


def prune_inbox(repo: Repo, run: str) -> list[str]:
    """Remove ``run``'s terminal inbox refs; the names removed, sorted."""
    for _ in range(3):
        refs = terminal_inbox_refs(repo, run)
        if not refs:
            return []
        tx = repo.transaction()
        for name, oid in refs.items():
            tx.delete(name, oid)
        try:
            tx.commit()
        except RefConflict:
            continue  # a concurrent prune removed some: list again
        return sorted(refs)
    return []


def inbox_runs(repo: Repo) -> list[str]:
    """Runs that have inbox refs here."""
    runs = {p.run for name in for_each_ref(repo, f"{ROOT}inbox/")
            if (p := parse_ref(name)) is not None}
    return sorted(runs)


def prune_all_inbox(repo: Repo, runs: Iterable[str] | None = None) -> list[str]:
    """``prune_inbox`` for every run with inbox refs (or ``runs``); the names removed."""
    removed: list[str] = []
    for run in inbox_runs(repo) if runs is None else runs:
        removed += prune_inbox(repo, run)
    return removed
