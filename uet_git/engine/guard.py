"""Tools that change the repository outside their worktree: ``TamperGuard`` compares the
repository's config files, ``info/``, hooks and refs outside ``refs/uet/``
(``gitrepo.tamper``) before and after each command a workstream runs (setup, tool,
acceptance), quarantines the workstream ``tampered`` with the changes as evidence and puts back
what it changed.

Unsandboxed, tools share the repository, so a change cannot be traced to one process: the
guard keeps ONE baseline per interval in which tools run. The interval opens when the first
command starts (baseline snapshot) and is checked each time one ends; a change seen then is
attributed to EVERY workstream whose command ran in the interval (the one ending and the ones
still running: each is flagged and learns it when its own command ends), the change is
restored, and a new interval starts for the commands still running. When a check finds
nothing the interval restarts at that moment, so a workstream that already ended is never
blamed for what happens later. uet itself never writes outside ``refs/uet/`` while tools
run, except a ``--land continuous`` landing, which runs through ``excused``: the tools'
changes so far are checked first, then the baseline is taken again after uet's own move.

Every interval's snapshots also hold the ties of each running workstream's worktree (its admin
dir's ``commondir``, ``gitdir``, ``locked`` and the worktree's ``.git`` file,
``tamper.Ties``): unsandboxed, a tool could re-point its worktree at a repository of its making
and uet's own git in that worktree would follow. A workstream entering an open interval adds
its ties to the baseline as they are then.

Sandboxed (bubblewrap), a tool can write nothing a full snapshot holds but its own worktree's
admin dir (``worktrees/<id>/config.worktree``; its ties are bound read-only there, checked
anyway), so only that is snapshotted (``tamper.worktree_snapshot``: a few file reads, no
process), exactly attributed; what others (the user, another run) change meanwhile is not the
tool's. A ``[sandbox] writable`` path that holds the git dir, or lies inside it, opens what it
covers to the tools again: then everything is checked, as for unsandboxed tools.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from uet_git.gitrepo import tamper
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.spec.models import SandboxConfig

T = TypeVar("T")


@dataclass
class Tampering:
    """What was changed while a workstream's command ran, and what was put back."""

    changes: list[str]
    restored: list[str] = field(default_factory=list)
    # The workstream itself first, then every other one whose command ran in the interval.
    suspects: list[str] = field(default_factory=list)

    def detail(self) -> str:
        """The quarantine's summary: a first line, then one line per change (refs with their
        full oids: ``uet land`` reads the target's line to name the tool that moved it)."""
        others = self.suspects[1:]
        shared = f"; it ran together with {', '.join(others)}" if others else ""
        put_back = sum(1 for r in self.restored if " not restored" not in r)
        head = (f"the repository was changed outside the worktree while it ran "
                f"({len(self.changes)} change{'s' * (len(self.changes) != 1)}{shared}); "
                f"{put_back} put back (tampering.txt says which)")
        # Only the changes: a line naming a ref is read as "the tool moved it" by `uet land`.
        return "\n".join([head, *self.changes])

    def evidence(self) -> bytes:
        lines = ["changed while it ran:", *self.changes, "", "put back:", *self.restored]
        if len(self.suspects) > 1:
            lines += ["", "workstreams running in that interval: " + ", ".join(self.suspects)]
        return ("\n".join(lines) + "\n").encode()


class TamperGuard:
    """Thread-safe; one per run. ``enter(ws, worktree)`` before a workstream's command,
    ``leave(ws)`` after it: the Tampering seen (and already restored), or None."""

    def __init__(self, repo: Repo, *, sandboxed: bool) -> None:
        self.repo = repo
        self.sandboxed = sandboxed
        self._lock = threading.Lock()
        self._baseline: tamper.Snapshot | None = None
        self._active: set[str] = set()
        self._touched: list[str] = []  # in the interval, in the order they started
        self._flagged: dict[str, Tampering] = {}
        self._ties: dict[str, tamper.Ties] = {}  # running workstream -> its worktree's ties
        self._own: dict[str, tamper.Snapshot] = {}  # sandboxed: ws -> its worktree's snapshot

    def enter(self, ws_id: str, worktree: Path) -> None:
        if self.sandboxed:
            ties = tamper.ties_of(self.repo, worktree)
            self._own[ws_id] = tamper.worktree_snapshot(self.repo, ties)
            return
        try:
            found: tamper.Ties | None = tamper.ties_of(self.repo, worktree)
        except GitError:
            found = None  # not a linked worktree of this repository: nothing ties it
        with self._lock:
            if found is not None:
                self._ties[ws_id] = found
            if not self._active:
                self._baseline = tamper.snapshot(self.repo, [found] if found else [])
                self._touched = []
            elif found is not None:
                assert self._baseline is not None
                self._baseline = tamper.with_ties(self._baseline, found)
            self._active.add(ws_id)
            if ws_id not in self._touched:
                self._touched.append(ws_id)

    def leave(self, ws_id: str) -> Tampering | None:
        if self.sandboxed:
            before = self._own.pop(ws_id)
            after = tamper.worktree_snapshot(self.repo, before.ties[0])
            found = tamper.changes(before, after, full_oids=True)
            if not found:
                return None
            return Tampering(found, tamper.restore(self.repo, before, after), [ws_id])
        with self._lock:
            self._active.discard(ws_id)
            self._check()
            self._ties.pop(ws_id, None)
            if self._active:
                assert self._baseline is not None
                self._baseline = tamper.narrowed(self._baseline, self._running_ties())
            else:
                self._baseline, self._touched = None, []
            return self._flagged.pop(ws_id, None)

    def _running_ties(self) -> list[tamper.Ties]:
        return [self._ties[w] for w in sorted(self._active) if w in self._ties]

    def excused(self, action: Callable[[], T]) -> T:
        """Run uet's own change of refs outside ``refs/uet/`` (a continuous landing) while
        tools may run, without taking it for theirs."""
        if self.sandboxed:
            return action()
        with self._lock:
            if self._active:
                self._check()
            try:
                return action()
            finally:
                if self._active:
                    self._baseline = tamper.snapshot(self.repo, self._running_ties())
                    self._touched = sorted(self._active)

    def _check(self) -> None:
        """Compare the interval's baseline with now (the lock is held)."""
        assert self._baseline is not None
        now = tamper.snapshot(self.repo, self._baseline.ties)
        found = tamper.changes(self._baseline, now, full_oids=True)
        if found:
            restored = tamper.restore(self.repo, self._baseline, now)
            for ws in self._touched:
                seen = self._flagged.get(ws)
                if seen is None:
                    suspects = [ws, *(w for w in self._touched if w != ws)]
                    self._flagged[ws] = Tampering(list(found), list(restored), suspects)
                else:
                    seen.changes += found
                    seen.restored += restored
            now = tamper.snapshot(self.repo, self._baseline.ties)
        self._baseline = now
        self._touched = [w for w in self._touched if w in self._active]


def guard_for(repo: Repo, config: SandboxConfig, *, sandboxed: bool) -> TamperGuard:
    """The guard of a run whose commands run sandboxed or not. A ``[sandbox] writable`` path
    holding the git dir, or inside it, opens (part of) it to the tools again: then everything
    is checked, as for unsandboxed tools."""
    common = os.path.realpath(repo.common_dir)
    opened = any(_holds(w, common) or _holds(common, w)
                 for w in (os.path.realpath(os.path.expanduser(p)) for p in config.writable))
    return TamperGuard(repo, sandboxed=sandboxed and not opened)


def _holds(directory: str, path: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
