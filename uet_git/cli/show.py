"""`uet show WS [RUN] [--attempt N] [--evidence NAME]`: a workstream's record, the diff stat of
its change, its history and its evidence with the git command that reads each blob; with
--evidence, that blob's raw bytes on stdout; with --json one object (docs/json.md). RUN may also
be given as --run RUN."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import click

from uet_git.cli._common import echo_json
from uet_git.cli.complete import complete_run, complete_ws
from uet_git.cli.diff import change_of
from uet_git.cli.log import format_events
from uet_git.cli.render import fmt_duration, fmt_time
from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.errors import UetError
from uet_git.gitrepo import Repo, odb
from uet_git.gitrepo.merge import diff_stat
from uet_git.ledger import query
from uet_git.ledger.evidence import evidence_path
from uet_git.ledger.log import MAY_CHANGE_CHECKS
from uet_git.workers.tools import result_summary

CHECKS_RE = re.compile(r"changes checks \(([^;)]*)")


def checks_changed(events: list[query.Event]) -> list[str]:
    """The protected paths the workstream's current candidate changes (from the summary of
    its transition marked ``Uet-May-Change-Checks``), newest first."""
    for e in reversed(events):
        if e.trailers.get(MAY_CHANGE_CHECKS, "").lower() == "true":
            m = CHECKS_RE.search(e.summary)
            return [p.strip() for p in m.group(1).split(",")] if m else []
    return []


@dataclass
class Shown:
    """Everything `uet show` prints, text or JSON."""

    run: str
    rec: query.WsRecord
    events: list[query.Event]
    change: dict[str, Any] | None
    attempt: int | None  # the attempt whose evidence is listed
    evidence: list[str]
    agent: str | None
    evidence_dir: str | None = None  # evidence/WS/N, or evidence/_XY/WS/N in a large run

    def to_dict(self) -> dict[str, Any]:
        return {**self.rec.to_dict(), "run": self.run, "change": self.change,
                "checks_changed": checks_changed(self.events) if self.rec.changes_checks
                else [],
                "history": [e.to_dict() for e in self.events],
                "evidence": {"attempt": self.attempt, "names": self.evidence,
                             "paths": [f"refs/uet/ledger/{self.run}:{self.evidence_dir}/{n}"
                                       for n in self.evidence]},
                "agent": self.agent}


def gather(repo: Repo, run_id: str, rec: query.WsRecord, attempt: int | None) -> Shown:
    if rec.state == query.PENDING:
        return Shown(run_id, rec, [], None, None, [], None)
    change = None
    found = change_of(rec)
    if found is not None and odb.has_object(repo, found[1]):
        what, commit = found
        parent = odb.get_commit(repo, commit).parent
        stat = [line.strip() for line in
                diff_stat(repo, parent, commit).rstrip("\n").splitlines()]
        change = {"what": what, "commit": commit, "parent": parent, "stat": stat}
    events = query.history(repo, run_id, rec.ws)
    shown = attempt if attempt is not None else rec.attempt
    names = query.evidence(repo, run_id, rec.ws, shown)
    assert isinstance(names, list)
    agent = None
    if "result.json" in names:  # the agent's own JSON result (claude: cost, turns, session)
        data = query.evidence(repo, run_id, rec.ws, shown, "result.json")
        agent = result_summary(data) if isinstance(data, bytes) else None
    where = evidence_path(repo, run_id, rec.ws, shown) if names and shown is not None else None
    return Shown(run_id, rec, events, change, shown, names, agent, where)


@click.command()
@click.argument("ws", shell_complete=complete_ws)
@click.argument("run_arg", metavar="[RUN]", required=False, shell_complete=complete_run)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP, shell_complete=complete_run)
@click.option("--attempt", type=click.IntRange(1), help="The attempt (default: the latest).")
@click.option("--evidence", "name", metavar="NAME",
              help="Print this evidence blob raw (e.g. tool.stdout) and nothing else.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json.md).")
def cmd(ws: str, run_arg: str | None, run_opt: str | None, attempt: int | None,
        name: str | None, as_json: bool) -> None:
    """Show workstream WS of RUN (default: the latest run): its state, attempt, reason, patch
    and candidate commits and timings, whether it landed, the diff stat of its change
    (`uet diff WS RUN` shows the diff), its ledger history, and its evidence blobs (stored in
    the ledger tree under evidence/WS/ATTEMPT/NAME), each with the git command that reads
    it."""
    repo = Repo.open(".", bare_ok=True)
    run = pick_run(run_arg, run_opt)
    run_id = query.resolve_run(repo, run)
    if name is not None:
        data = query.evidence(repo, run_id, ws, attempt, name)
        assert isinstance(data, bytes)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        rec = query.ws_status(repo, run_id, ws)
    except UetError as err:
        if run is None:  # the latest run: say which runs do have it
            others = sorted({name.split("/")[3] for name, _ in
                             query.for_each_ref(repo, [f"refs/uet/*/*/{ws}"])} - {run_id})
            if others:
                raise UetError(f"{err}; it is in run {others[-1]}: use --run {others[-1]}") \
                    from None
        raise
    got = gather(repo, run_id, rec, attempt)
    if as_json:
        echo_json(got.to_dict())
        return
    for line in render(got, explicit_attempt=attempt is not None):
        click.echo(line)


def render(got: Shown, *, explicit_attempt: bool) -> list[str]:
    rec, run_id, ws = got.rec, got.run, got.rec.ws
    fields = [
        ("workstream", rec.ws),
        ("run", run_id),
        ("state", rec.state + (" (refs removed by uet gc)" if rec.collected else "")),
        ("attempt", "-" if rec.attempt is None else str(rec.attempt)),
        ("reason", rec.reason or "-"),
    ]
    if rec.blocked_by:
        fields.append(("blocked by", rec.blocked_by))
    if rec.state == "committed":
        fields.append(("landed", "yes" if rec.landed else "no"))
    if rec.changes_checks:
        paths = checks_changed(got.events)
        fields.append(("changes checks", "yes" + (f" ({', '.join(paths)})" if paths else "")
                       + "; may_change_checks: true, judged by the base's checks"))
    fields += [
        ("patch", rec.patch or "-"),
        ("candidate", rec.candidate or "-"),
        ("ref", rec.ref or "-"),
        ("started", fmt_time(rec.started)),
        ("updated", fmt_time(rec.updated)),
        ("duration", fmt_duration(rec.duration)),
    ]
    width = max(len(k) + 1 for k, _ in fields)
    lines = [f"{k + ':':<{width}} {v}" for k, v in fields]
    if rec.state == query.PENDING:
        return lines
    if got.change is not None:
        what, commit = got.change["what"], got.change["commit"]
        lines.append(f"\nchange ({what} {commit[:12]} against its parent; "
                     f"`uet diff {ws} {run_id}` shows it):")
        lines += [f"  {line}" for line in got.change["stat"]]
    lines.append("\nhistory:")
    lines += [f"  {line}" for line in format_events(got.events, fmt_time)]
    shown, names = got.attempt, got.evidence
    lines.append(f"\nevidence (attempt {shown if shown is not None else '-'}):")
    if not names:
        lines.append("  (none)")
    width = max((len(n) for n in names), default=0)
    lines += [f"  {n:<{width}}  git show refs/uet/ledger/{run_id}:{got.evidence_dir}/{n}"
              for n in names]
    if "result.json" in names:
        lines.append(f"agent: {got.agent}" if got.agent
                     else "agent: (no cost or turns in result.json)")
    if names:
        lines.append(f"or: uet show {ws} {run_id} --evidence NAME"
                     + (f" --attempt {shown}" if explicit_attempt else ""))
    return lines
