"""`uet check`: every uet patch in a revision range must be one the ledger committed.

A commit is a uet patch when its message carries a ``Uet-Workstream`` trailer (patch and
candidate commits do; ledger records, which also carry ``Uet-To``, are the ledger itself and are
skipped). Its ``Uet-Run`` trailer names the run; the commit passes when its oid is the candidate
or the patch of that workstream's transition to ``committed`` and the workstream is still
committed (not rolled back), or when the ledger itself put it on a branch or on the integration
ref: every commit a recorded landing brought in (``run: land``: ``Uet-Previous..Uet-Landed``,
so ``land``, ``land --rebase``, a partial ``land --only`` and the commits a rollback later
reverted) and every commit of a recorded re-integration (``run: rebase``:
``Uet-Onto..Uet-Integration``). Anything else fails with the reason: quarantined (with the
reason code), dropped, blocked, rolled back, an older attempt, not yet committed, or unknown.
A commit merged by hand or forged with uet trailers is in none of those ranges.

The ledger (``refs/uet/ledger/RUN``) is the source of truth, not the state refs, so commits
stay checkable after ``uet gc`` removed a finished run's state refs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from uet_git.errors import UetError
from uet_git.gitrepo import GitError, Repo, merge, odb
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger import query


@dataclass
class _RunIndex:
    known: bool
    committed: dict[str, str]  # oid -> ws, for workstreams whose final state is committed
    seen: dict[str, tuple[str, int | None, str, str | None]]  # oid -> (ws, attempt, state, reason)
    records: dict[str, query.WsRecord]
    placed: set[str] = field(default_factory=set)  # commits the ledger landed or re-integrated


# Run events whose trailers bound a range of commits the ledger itself put on a ref:
# subject -> (trailer of the old end, trailer of the new end).
_PLACED = {"run: land": ("Uet-Previous", "Uet-Landed"),
           "run: rebase": ("Uet-Onto", "Uet-Integration")}


def _placed(repo: Repo, log: query.LedgerLog) -> set[str]:
    """The commits the ledger put on the target or the integration ref and did not take
    back: a rollback by reset takes every earlier landing back (the commits left the
    target); a rollback by revert keeps the landed commits (they stay in the target's
    history, their reverts on top) but takes back a re-integration that never landed; each
    re-integration replaces the chain of the one before (``uet drop`` of a committed
    workstream re-integrates the rest without it)."""
    landed: set[str] = set()
    rebased: set[str] = set()
    for e in log.events:
        if e.ws is not None:
            continue
        if e.subject == "run: rollback":
            rebased.clear()
            if e.trailers.get("Uet-Rollback") == "reset":
                landed.clear()
            continue
        ends = _PLACED.get(e.subject)
        if ends is None:
            continue
        old, new = (e.trailers.get(k) for k in ends)
        if not old or not new or not odb.has_object(repo, old) or not odb.has_object(repo, new):
            continue
        commits = set(merge.rev_list(repo, new, f"^{old}"))
        if e.subject == "run: land":
            landed |= commits
        else:  # a re-integration replaces the integration chain the previous one made
            rebased = commits
    return landed | rebased


def _index_run(repo: Repo, run: str) -> _RunIndex:
    try:
        log = query.read_ledger(repo, run)
    except UetError:
        return _RunIndex(False, {}, {}, {})
    by_ws: dict[str, list[query.Event]] = {}
    for e in log.transitions():
        by_ws.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
    committed: dict[str, str] = {}
    seen: dict[str, tuple[str, int | None, str, str | None]] = {}
    records: dict[str, query.WsRecord] = {}
    for ws, evs in by_ws.items():
        rec = query.ws_record(ws, evs)
        records[ws] = rec
        # The state each oid reached last (an oid belongs to one attempt of one workstream).
        patch = cand = None
        attempt: int | None = None
        for e in evs:
            if e.attempt != attempt:
                attempt, patch, cand = e.attempt, None, None
            patch = e.patch or patch
            cand = e.candidate or cand
            for oid in (patch, cand):
                if oid:
                    seen[oid] = (ws, attempt, e.to or "", e.reason)
        if rec.state == "committed":
            for oid in (rec.patch, rec.candidate):
                if oid:
                    committed[oid] = ws
    return _RunIndex(True, committed, seen, records, _placed(repo, log))


def _verdict(oid: str, run: str | None, ws: str, idx: _RunIndex | None) -> str | None:
    """None when the commit is a committed patch, else why not."""
    if run is None:
        return f"{ws}: no Uet-Run trailer, cannot find its ledger"
    if idx is None or not idx.known:
        return f"{ws}: run {run} is unknown here (no refs/uet/ledger/{run}; fetch refs/uet/*)"
    if oid in idx.committed or oid in idx.placed:
        return None
    if oid in idx.seen:
        sws, attempt, state, reason = idx.seen[oid]
        rec = idx.records[sws]
        if state == "quarantined":
            return f"{sws}: quarantined ({reason or 'no reason'}) in run {run}"
        if state == "rolled-back" or (state == "committed" and rec.state == "rolled-back"):
            return f"{sws}: rolled back in run {run}"
        if rec.attempt is not None and attempt is not None and attempt != rec.attempt:
            return (f"{sws}: attempt {attempt} was {state}; attempt {rec.attempt} is "
                    f"{rec.state} in run {run}")
        if oid not in (rec.patch, rec.candidate):
            current = rec.candidate or rec.patch
            return (f"{sws}: a superseded candidate (the tip moved; {sws} is {rec.state}"
                    + (f" as {current[:12]}" if current else "") + f") in run {run}")
        if state == "committed":
            return f"{sws}: {rec.state} in run {run}"
        return f"{sws}: {state}{f' ({reason})' if reason else ''}, not committed, in run {run}"
    rec = idx.records.get(ws)
    if rec is None:
        return f"{ws}: not a workstream of run {run}"
    what = rec.state + (f" ({rec.reason})" if rec.reason else "")
    return f"{ws}: not a patch the ledger recorded for {ws} (which is {what}) in run {run}"


def _rev_list(repo: Repo, revs: Sequence[str]) -> list[str]:
    if not revs:
        raise UetError("uet check: give a revision range (e.g. main..feature)")
    try:
        return merge.rev_list(repo, *revs, "--")
    except GitError as exc:  # "git rev-list ARGS: <git's first line>": keep git's words
        why = str(exc).split(": ", 1)[-1]
        raise UetError(f"uet check: bad revision range {' '.join(revs)}: {why}") from None


def check_revs(repo: Repo, revs: Sequence[str]) -> tuple[int, list[str]]:
    """(number of uet patches checked, one line per commit that fails). ``revs`` are
    ``git rev-list`` arguments (``A..B``, ``B --not --remotes``...)."""
    problems: list[str] = []
    indexes: dict[str, _RunIndex] = {}
    checked = 0
    for oid in _rev_list(repo, revs):
        commit = odb.get_commit(repo, oid)
        trailers = parse_trailers(commit.message)
        ws = trailers.get("Uet-Workstream")
        if ws is None or "Uet-To" in trailers:
            continue
        checked += 1
        run = trailers.get("Uet-Run")
        idx = None
        if run is not None:
            if run not in indexes:
                indexes[run] = _index_run(repo, run)
            idx = indexes[run]
        why = _verdict(oid, run, ws, idx)
        if why is not None:
            subject = commit.message.split("\n", 1)[0][:60]
            problems.append(f"{oid[:12]} {subject!r}: {why}")
    return checked, problems
