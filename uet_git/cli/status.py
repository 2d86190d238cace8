"""`uet status [RUN] [--json] [--watch]`: every workstream of a run (the latest by default),
counts, and whether the run is live.

The ``--json`` object (stable; every field in docs/json.md): ``run, base, target, started,
updated, integration, finished, landed, landed_workstreams, counts {state: n} (every state,
zeros included), workstreams [{ws, state, attempt, reason, blocked_by, patch, candidate,
started, updated, duration, ref, collected, landed, changes_checks, running}], live``. Times
are ISO 8601 UTC; ``duration`` is seconds between a workstream's first and last ledger
transition. ``landed`` is true only when every committed workstream is on the target (a
partial landing says ``landed 2 of 5`` in the table's header). ``state`` is the ledger's
(``pending``: planned, not started). ``running`` is null or ``{worker, stage, since,
elapsed}`` while a live process works on it; ``live`` is null (no process ever said it runs
this run) or ``{pid, alive, live, started, elapsed, eta_seconds, jobs}`` (``alive`` false: the
process is gone, a kill or crash; ``uet resume`` continues). In the table a workstream a
worker has is shown ``running`` (a display state, not a ledger state) with its stage and
worker: ``tool``, ``acceptance`` or ``verifying``. Where that comes from: the live-state file
of the running process (``ledger/live.py``). Kept light on purpose: only ledger readers are
imported. States are the state refs' names; the rest is the ledger's fold that readers keep
(``ledger/fold.py``), so a status reads only the ledger commits since the last one.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import click

from uet_git.cli._common import echo_json
from uet_git.cli.complete import complete_run
from uet_git.cli.render import NO_RUNS, fmt_counts, fmt_duration, text_table
from uet_git.commands.sync import remote_states
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.live import Live, Running, eta_seconds, read_live, writer_pid
from uet_git.ledger.log import read_plan_at
from uet_git.ledger.words import plural


def who(worker: int) -> str:
    """``worker 0``, ``integrator`` (-1), ``verifier 1`` (-2)..."""
    if worker >= 0:
        return f"worker {worker}"
    return "integrator" if worker == -1 else f"verifier {-worker - 1}"


def doing(r: Running) -> str:
    """What a running workstream does: the worker's stage, or ``verifying`` on the
    integrator and the verifiers."""
    return f"verifying ({r.stage})" if r.worker < 0 and r.stage else r.stage or "running"


@dataclass
class Snapshot:
    """A run's status with what its live process says, at one moment."""

    st: query.RunStatus
    live: Live | None
    running: dict[str, Running]
    eta: float | None
    writer: int | None
    now: float

    @property
    def is_live(self) -> bool:
        return self.live is not None and self.live.live

    def display(self, ws: str, state: str) -> str:
        return "running" if ws in self.running else state

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.st.workstreams:
            s = self.display(w.ws, w.state)
            out[s] = out.get(s, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        d = self.st.to_dict()
        for w in d.get("workstreams") or []:
            r = self.running.get(w["ws"])
            w["running"] = r.to_dict(self.now) if r is not None else None
        lv = self.live
        d["live"] = None if lv is None else {
            "pid": lv.pid, "alive": lv.alive, "live": lv.live, "jobs": lv.jobs,
            "started": _iso(lv.started), "elapsed": round(self.now - lv.started, 3),
            "eta_seconds": None if self.eta is None else round(self.eta, 3)}
        return d


def snapshot(repo: Repo, run_id: str) -> Snapshot:
    st = query.run_status(repo, run_id)
    live = read_live(repo, run_id)
    now = time.time()
    running: dict[str, Running] = {}
    eta = None
    if live is not None and live.live:
        for r in live.running:
            # A workstream on a worker and on the integrator: the worker's stage is its own.
            if r.ws not in running or running[r.ws].worker < 0:
                running[r.ws] = r
        states = {w.ws: w.state for w in st.workstreams}
        elapsed = {ws: now - r.ws_since for ws, r in running.items() if r.worker >= 0}
        try:
            plan = read_plan_at(repo, run_id, st.ledger_tip, st.ledger_root) \
                if st.ledger_tip else None
        except Exception:  # the ETA is a nicety: an unreadable plan only costs it
            plan = None
        eta = eta_seconds(plan, states, elapsed, live.jobs)
    writer = writer_pid(repo, run_id) if live is None or not live.live else None
    return Snapshot(st, live, running, eta, writer, now)


def _floatstr(o: float) -> str:
    if o != o:
        return "NaN"
    if o in (float("inf"), float("-inf")):
        return "Infinity" if o > 0 else "-Infinity"
    return float.__repr__(o)


_SCALARS: dict[type, Callable[[Any], str]] = {
    str: encode_basestring_ascii, type(None): lambda _: "null",
    bool: lambda v: "true" if v else "false", int: int.__repr__, float: _floatstr}


def json_text(obj: Any, pad: str = "\n") -> str:
    """``json.dumps(obj, indent=2, default=str)``, the same text, about twice as fast: the
    standard encoder with an indent is pure Python, and a status of 10,000 workstreams is
    150,000 values."""
    scalar = _SCALARS.get(type(obj))
    if scalar is not None:
        return scalar(obj)
    inner = pad + "  "
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        parts = []
        for k, v in obj.items():
            if type(k) is not str:
                return json.dumps(obj, indent=2, default=str).replace("\n", pad)
            to_text = _SCALARS.get(type(v))
            parts.append(f"{encode_basestring_ascii(k)}: "
                         f"{to_text(v) if to_text is not None else json_text(v, inner)}")
        return "{" + inner + ("," + inner).join(parts) + pad + "}"
    if isinstance(obj, list | tuple):
        if not obj:
            return "[]"
        return "[" + inner + ("," + inner).join([json_text(v, inner) for v in obj]) + pad + "]"
    return json_text(str(obj), pad)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def liveness(snap: Snapshot) -> str:
    """``live: pid 123, 0:42 elapsed, eta ~0:30`` / ``not running: ...`` / ``""``."""
    lv = snap.live
    if lv is not None and lv.live:
        text = f"live: pid {lv.pid}, {fmt_duration(snap.now - lv.started)} elapsed"
        if snap.eta is not None:
            text += f", eta ~{fmt_duration(snap.eta)}"
        return text
    if lv is not None and not snap.st.finished:
        return (f"not running: its process (pid {lv.pid}) is gone; "
                f"`uet resume {snap.st.run}` continues it")
    if snap.writer is not None:
        return f"being written by pid {snap.writer}"
    if not snap.st.finished:
        # No live-state file (never written, or a dead one `uet gc` removed) and no writer:
        # the ledger alone says the run stopped half way.
        return (f"not running: no process runs it and it did not finish; "
                f"`uet resume {snap.st.run}` continues it")
    return ""


def landed_flag(st: query.RunStatus) -> str | None:
    """``landed`` (every committed workstream is on the target), ``landed 2 of 5`` (a partial
    landing: 2 of the 5 committed), or None (nothing of the run is on the target now: never
    landed, rolled back, reset)."""
    n = len(st.landed_workstreams)
    if st.landed:
        return "landed"
    if n:
        return f"landed {n} of {st.committed}"
    return None


def reason_of(w: query.WsRecord) -> str:
    """The REASON cell: a quarantine's reason, a blocked one's with its dependency, and a
    workstream allowed to change the checks that did (``Uet-May-Change-Checks``)."""
    parts = []
    if w.reason:
        parts.append(w.reason + (f" ({w.blocked_by})" if w.blocked_by else ""))
    if w.changes_checks:
        parts.append("changes checks")
    return "; ".join(parts)


def render(snap: Snapshot) -> list[str]:
    st = snap.st
    flags = [f for f in (landed_flag(st), "finished" if st.finished else None) if f]
    lines = [f"run {st.run}  base {(st.base or '-')[:12]}  target {st.target or '-'}"
             + (f"  ({', '.join(flags)})" if flags else "")]
    said = liveness(snap)
    if said:
        lines.append(said)
    show_landed = bool(st.landed_workstreams)
    running = snap.running
    rows = []
    # Per row only what differs: 10,000 workstreams share a few states, attempts, reasons
    # and durations (their cells are made once each).
    duration = functools.lru_cache(maxsize=None)(fmt_duration)
    for w in st.workstreams:
        r = running.get(w.ws) if running else None
        row = [w.ws, ("running" if r is not None else w.state) + (" (gc)" if w.collected else ""),
               "-" if w.attempt is None else str(w.attempt),
               reason_of(w) if w.reason or w.changes_checks else "", duration(w.duration)]
        if show_landed:
            row.append("yes" if w.landed else "no" if w.state == "committed" else "")
        if running:
            row.append(f"{doing(r)} on {who(r.worker)}, {fmt_duration(snap.now - r.since)}"
                       if r is not None else "")
        rows.append(row)
    if rows:
        headers = ["WORKSTREAM", "STATE", "ATTEMPT", "REASON", "DURATION"]
        if show_landed:
            headers.append("LANDED")
        if running:
            headers.append("NOW")
        lines.append(text_table(rows, headers))
    lines.append(f"{plural(len(st.workstreams), 'workstream')}: {fmt_counts(snap.counts())}")
    if any(w.changes_checks for w in st.workstreams):
        lines.append("changes checks: its candidate changed uet.toml, .uet/ or a protected "
                     "path (may_change_checks: true); it was judged by the base's checks")
    return lines


def _changes(before: dict[str, str], snap: Snapshot) -> tuple[dict[str, str], list[str]]:
    """One line per workstream whose shown state or stage changed since ``before``."""
    now: dict[str, str] = {}
    for w in snap.st.workstreams:
        r = snap.running.get(w.ws)
        now[w.ws] = f"running ({doing(r)} on {who(r.worker)})" if r else \
            w.state + (f" [{w.reason}]" if w.reason else "")
    stamp = time.strftime("%H:%M:%S")
    return now, [f"{stamp} {ws}: {shown}" for ws, shown in now.items()
                 if before.get(ws) != shown]


def watch(repo: Repo, run_id: str, interval: float, *, as_json: bool = False) -> None:
    """Redraw (a terminal) or print one line per change until the run's process ends; with
    ``as_json`` the --json object, on one line, each time something but the clock changed."""
    tty = sys.stdout.isatty() and not as_json
    before: dict[str, str] = {}
    said = None
    last_json: tuple[object, ...] | None = None
    while True:
        snap = snapshot(repo, run_id)
        if as_json:
            shown, _ = _changes({}, snap)
            key = (tuple(sorted(shown.items())), snap.is_live)
            if key != last_json:
                click.echo(json.dumps(snap.to_dict(), separators=(",", ":"), default=str))
            last_json = key
        elif tty:
            click.echo("\x1b[H\x1b[J" + "\n".join(render(snap)))
        else:
            now_said = liveness(snap)
            if now_said.split(",")[0] != (said or "").split(",")[0] and now_said:
                click.echo(now_said)
            said = now_said
            before, lines = _changes(before, snap)
            for line in lines:
                click.echo(line)
        if not snap.is_live and snap.writer is None:
            if not tty and not as_json:
                click.echo(f"{plural(len(snap.st.workstreams), 'workstream')}: "
                           f"{fmt_counts(snap.counts())}")
            return
        time.sleep(interval)


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print the stable JSON object.")
@click.option("--watch", "-w", "watching", is_flag=True,
              help="Follow the run until its process ends: redraw on a terminal, else one "
                   "line per change (with --json: the object on one line per change).")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              help="Seconds between looks with --watch.")
@click.option("--remote", "remote", metavar="URL",
              help="Read the states from URL's ref names (git ls-remote), without cloning.")
def cmd(run: str | None, as_json: bool, watching: bool, interval: float,
        remote: str | None) -> None:
    """Show the state of every workstream of RUN (default: the latest run; a unique prefix of
    a run id works): state, attempt, quarantine reason and time in the ledger, then the counts
    per state. States come from the refs refs/uet/<state>/RUN/WS, reasons and times from the
    ledger refs/uet/ledger/RUN. `pending`: planned, not started; `(gc)`: its refs were removed
    by `uet gc`, the state is the ledger's last transition. While the run's process is alive:
    `live` with its pid, elapsed time and ETA (from estimates and earlier runs' durations),
    and `running` for what a worker has now, with its stage (tool, acceptance, verifying) and
    worker.

    The header says `(landed)` when every committed workstream is on the target, `(landed 2
    of 5)` after a partial landing (and a LANDED column), nothing after a rollback; REASON
    names a blocked workstream's quarantined dependency and `changes checks` for one allowed
    to change the checks (may_change_checks) that did.

    --json prints one object (docs/json.md): run, base, target, started, updated,
    integration, finished, landed, landed_workstreams, counts {state: n}, workstreams [...],
    live (times ISO 8601 UTC, duration in seconds)."""
    if remote is not None:
        _remote_status(remote, run, as_json)
        return
    repo = Repo.open(".", bare_ok=True)
    latest = query.latest_run(repo) if run is None else None
    if run is None and latest is None:
        if as_json:
            echo_json(None)
        else:
            click.echo(NO_RUNS)
        return
    run_id = latest or query.resolve_run(repo, run)
    if watching:
        watch(repo, run_id, interval, as_json=as_json)
        return
    snap = snapshot(repo, run_id)
    if as_json:
        click.echo(json_text(snap.to_dict()))
        return
    for line in render(snap):
        click.echo(line)


def _remote_status(url: str, run: str | None, as_json: bool) -> None:
    run_id, states = remote_states(url, run)
    if as_json:
        echo_json(None if run_id is None else {"run": run_id, "workstreams": states})
        return
    if run_id is None:
        click.echo(f"No runs in {url}.")
        return
    click.echo(f"run {run_id} in {url}")
    for ws, state in states.items():
        click.echo(f"{ws}  {state}")
