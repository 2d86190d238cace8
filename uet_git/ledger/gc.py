"""`uet gc`: remove the refs of finished workstreams of old runs, then pack refs.

What "removing a run's refs" means (the command's help says the same):
- a run is old when its last ledger commit (not counting earlier ``run: gc`` records) is older
  than ``older_than``; a run whose writer lock is held (a live run) is never touched;
- for every committed workstream its state ref and all its patch refs
  (``refs/uet/patches/RUN/WS/*``) go: its change lives on in the integration chain. Dropped
  and rolled-back workstreams keep theirs (their patch would become unreachable and a later
  ``git gc`` would delete it: no uet command loses a patch unless asked) unless
  ``prune_dropped`` (``uet gc --prune-dropped``), which lists what goes in
  ``GcResult.pruned``; quarantined and blocked workstreams, which wait for a user's retry or
  drop, keep theirs unless ``include_quarantined``; a run interrupted mid-way
  (created..verified) keeps those refs, it can still be resumed;
- the integration ref goes once no state ref is left and nothing would be lost: it equals the
  base, the target branch contains it (landed), or no workstream is committed any more;
- the ledger branch ``refs/uet/ledger/RUN`` is KEPT: it is the audit trail (every transition,
  reason and piece of evidence, a few KiB), and ``uet check`` uses it to recognise landed
  patches. ``uet status`` still shows a collected workstream's last state. Delete a whole run
  by hand with ``git update-ref -d refs/uet/ledger/RUN``.
The ``run: gc`` ledger commit naming what goes (fsck and ``expected_refs`` read it: a missing
ref after it is expected) and the deletions are one ref transaction, with old values
(``Ledger.collect``). Finally ``git pack-refs --all`` (``gitrepo.refs.pack_refs``; skipped
while any run is live: packed refs would slow its transitions, GIT-NOTES.md). Objects only
reachable from removed refs become garbage for a later ``git gc``.

Whatever their age, stale live-state files (``.git/uet/live/RUN.json`` left by a process that
was killed: its pid is gone or reused, see ``ledger/live.py``) are removed too
(``GcResult.live_removed``); the ledger still says the run did not finish, so `uet status`
keeps saying `uet resume RUN` continues it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta

from uet_git.errors import UetError
from uet_git.gitrepo import GitError, RefConflict, Repo
from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.refs import pack_refs
from uet_git.ledger import query
from uet_git.ledger.expected import GC_EVENT
from uet_git.ledger.inbox import inbox_runs, prune_inbox, terminal_inbox_refs
from uet_git.ledger.layout import ROOT, parse_ref
from uet_git.ledger.live import live_path, read_live
from uet_git.ledger.lock import lock_held
from uet_git.ledger.words import plural
from uet_git.ledger.writer import Ledger, LedgerBusy

WAITING = frozenset({"quarantined", "blocked"})
DROPPED = frozenset({"dropped", "rolled-back"})  # collected only with prune_dropped


@dataclass
class RunGc:
    run: str
    refs: dict[str, str] = field(default_factory=dict)  # ref -> old oid, to delete
    workstreams: list[str] = field(default_factory=list)
    note: str | None = None  # why nothing (more) was done
    pruned: list[str] = field(default_factory=list)  # "WS (state): ref ..." of dropped ones


@dataclass
class GcResult:
    dry_run: bool
    runs: list[RunGc] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one line per run not touched, and why
    packed: bool = False
    pack_note: str | None = None
    live_removed: list[str] = field(default_factory=list)  # "RUN (pid N)": stale live files
    inbox_removed: list[str] = field(default_factory=list)  # terminal inbox refs (ledger.inbox)

    @property
    def removed(self) -> list[str]:
        return [ref for r in self.runs for ref in r.refs]

    @property
    def pruned(self) -> list[str]:
        """One line per dropped or rolled-back workstream whose patches go (prune_dropped)."""
        return [f"{r.run}: {line}" for r in self.runs for line in r.pruned]


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``45m``, ``90s``, ``2w`` or a bare number of days."""
    t = text.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    try:
        if t and t[-1] in units:
            return timedelta(seconds=float(t[:-1]) * units[t[-1]])
        return timedelta(days=float(t))
    except ValueError:
        raise UetError(f"--older-than {text!r}: expected a number with s, m, h, d or w "
                       "(e.g. 30d)") from None


def _last_activity(log: query.LedgerLog) -> int:
    times = [e.time for e in log.events if not e.subject.startswith(GC_EVENT)]
    return max(times) if times else 0


def _target_contains(repo: Repo, target: str | None, oid: str) -> bool:
    if not target:
        return False
    ref = target if target.startswith("refs/") else f"refs/heads/{target}"
    tip = repo.read_ref(ref)
    if tip is None:
        return False
    try:
        return is_ancestor(repo, oid, tip)
    except GitError:
        return False


def plan_run(repo: Repo, run: str, refs: dict[str, str], log: query.LedgerLog,
             include_quarantined: bool, prune_dropped: bool = False) -> RunGc:
    """What gc would delete in ``run`` (``refs``: this run's refs)."""
    out = RunGc(run)
    removable = {"committed"} | (WAITING if include_quarantined else set()) \
        | (DROPPED if prune_dropped else set())
    last = log.last_transitions()
    state_of: dict[str, str] = {ws: e.to for ws, e in last.items() if e.to}
    kept_states = 0
    ws_with_state_ref: set[str] = set()
    for name, oid in refs.items():
        p = parse_ref(name)
        if p is None or p.kind != "state" or p.ws is None:
            continue
        ws_with_state_ref.add(p.ws)
        state_of[p.ws] = p.state or state_of.get(p.ws, "")
        if p.state in removable:
            out.refs[name] = oid
            out.workstreams.append(p.ws)
        else:
            kept_states += 1
    gone = set(out.workstreams) | {
        ws for ws, st in state_of.items() if ws not in ws_with_state_ref and st in removable
    }
    for name, oid in refs.items():
        p = parse_ref(name)
        if p is not None and p.kind == "patch" and p.ws in gone:
            out.refs[name] = oid
    for ws in sorted(gone):
        if state_of.get(ws) in DROPPED:
            names = sorted(n for n in out.refs if (p := parse_ref(n)) is not None and p.ws == ws)
            out.pruned.append(f"{ws} ({state_of[ws]}): " + ", ".join(
                f"{n} ({out.refs[n][:12]})" for n in names))
    iref = query.integration_ref(run)
    itip = refs.get(iref)
    if itip is not None and kept_states == 0:
        committed = any(st == "committed" for st in state_of.values())
        if itip == log.base or not committed or _target_contains(repo, log.target, itip):
            out.refs[iref] = itip
        else:
            out.note = (f"kept {iref}: its committed work is not on {log.target or 'a target'} "
                        f"(land it with `uet land {run}`)")
    out.workstreams.sort()
    return out


def gc(
    repo: Repo,
    older_than: timedelta,
    include_quarantined: bool = False,
    dry_run: bool = False,
    now: float | None = None,
    prune_dropped: bool = False,
) -> GcResult:
    """Remove refs of finished workstreams of runs idle for longer than ``older_than``
    (dropped and rolled-back ones only with ``prune_dropped``: ``GcResult.pruned``)."""
    result = GcResult(dry_run=dry_run)
    cutoff = (time.time() if now is None else now) - older_than.total_seconds()
    by_run: dict[str, dict[str, str]] = {}
    for name, oid in repo.list_refs(ROOT).items():
        p = parse_ref(name)
        if p is not None and p.kind != "inbox":
            by_run.setdefault(p.run, {})[name] = oid
    result.live_removed = stale_live_files(repo, remove=not dry_run)
    # Inbox refs are transport, not ledger state: one whose attempt the ledger recorded (or
    # that no run will read again) goes whatever the run's age, as the coordinator would.
    for run in inbox_runs(repo):
        if lock_held(repo, run):
            continue
        result.inbox_removed += (sorted(terminal_inbox_refs(repo, run)) if dry_run
                                 else prune_inbox(repo, run))
    any_live = False
    for run in sorted(by_run):
        refs = by_run[run]
        tip = refs.get(query.ledger_ref(run))
        if tip is None:
            result.skipped.append(f"{run}: refs without a ledger branch, not touched "
                                  "(see `uet fsck`)")
            continue
        if lock_held(repo, run):
            any_live = True
            result.skipped.append(f"{run}: live (a uet process holds its lock), not touched")
            continue
        log = query.read_ledger(repo, run, tip=tip)
        if _last_activity(log) > cutoff:
            continue
        plan = plan_run(repo, run, refs, log, include_quarantined, prune_dropped)
        if not plan.refs:
            continue
        if dry_run:
            result.runs.append(plan)
            continue
        done = _apply(repo, run, plan, result)
        if done:
            result.runs.append(plan)
    if not dry_run:
        if any_live:
            result.pack_note = "refs not packed: a run is live (packing would slow it down)"
        else:
            pack_refs(repo)
            result.packed = True
    return result


def stale_live_files(repo: Repo, *, remove: bool) -> list[str]:
    """``RUN (pid N)`` for each live-state file whose process is gone (or unreadable:
    ``RUN (unreadable)``), removed when ``remove``. A file whose process lives is kept, and so
    is one a run's writer lock is held for (its process is about to replace it)."""
    out: list[str] = []
    try:
        names = sorted((repo.uet_dir / "live").glob("*.json"))
    except OSError:
        return out
    for path in names:
        run = path.stem
        live = read_live(repo, run)
        if live is not None and live.alive:
            continue
        with contextlib.suppress(UetError):  # not a run id: a stray file, stale all the same
            if lock_held(repo, run):
                continue
        out.append(f"{run} (pid {live.pid})" if live is not None else f"{run} (unreadable)")
        if remove:
            with contextlib.suppress(FileNotFoundError):
                live_path(repo, run).unlink()
    return out


def _apply(repo: Repo, run: str, plan: RunGc, result: GcResult) -> bool:
    """Record the ``run: gc`` event and delete the refs, holding the run's writer lock."""
    try:
        ledger = Ledger.open(repo, run)
    except LedgerBusy:
        result.skipped.append(f"{run}: live (a uet process holds its lock), not touched")
        return False
    except UetError as exc:
        result.skipped.append(f"{run}: not touched: {exc}")
        return False
    with ledger:
        body = (f"uet gc removed {plural(len(plan.refs), 'ref')} of "
                f"{plural(len(plan.workstreams), 'finished workstream')}; the ledger keeps "
                "their history and evidence.")
        try:
            ledger.collect(plan.refs, body, trailers={"Uet-Gc-Refs": str(len(plan.refs))})
        except RefConflict as exc:
            result.skipped.append(f"{run}: refs moved while collecting, nothing removed: {exc}")
            return False
    return True
