"""`uet fsck [RUN] [--repair]`: check that refs/uet/ and the ledger agree; one line per
violation. With --repair, refs that disagree with the ledger are reset from it first."""

from __future__ import annotations

from typing import Any

import click

from uet_git.cli._common import echo_json
from uet_git.cli.complete import complete_run
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.fsck import fsck
from uet_git.ledger.lock import LedgerBusy
from uet_git.ledger.repair import repair


@click.command()
@click.argument("run", required=False, shell_complete=complete_run)
@click.option("--repair", "do_repair", is_flag=True,
              help="Reset every ref of RUN (default: of every run not running now) that "
                   "disagrees with the ledger, e.g. an integration ref a tool moved, recording "
                   "a `run: repair` ledger commit; then check.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json.md); the exit code is the same.")
def cmd(run: str | None, do_repair: bool, as_json: bool) -> None:
    """Check RUN (default: every run and every ref under refs/uet/): one state ref per started
    workstream, agreeing with its last ledger transition; legal transitions; every object the
    refs and ledger name exists; patch refs match the ledger; the integration ref holds exactly
    the committed patches, in dependency order. Prints one line per violation; exit 0 when
    clean, 1 otherwise.

    --repair first resets the refs from the ledger (the ledger is the truth, refs are its
    index), one line per fix; what it cannot fix is then reported as above."""
    repo = Repo.open(".", bare_ok=True)
    fixes: list[dict[str, str | None]] = []
    if do_repair:
        run = _repair(repo, run, fixes, say=not as_json)
    problems = fsck(repo, run)
    if as_json:
        out: dict[str, Any] = {"run": run, "clean": not problems, "problems": problems,
                               "repaired": fixes if do_repair else None}
        echo_json(out)
        if problems:
            raise SystemExit(EXIT_WORK_FAILED)
        return
    for line in problems:
        click.echo(line)
    if problems:
        raise UetError(f"fsck: {len(problems)} problem{'s' * (len(problems) != 1)}",
                       exit_code=EXIT_WORK_FAILED)
    click.echo("uet fsck: clean")


def _repair(repo: Repo, run: str | None, fixes: list[dict[str, str | None]], *, say: bool
            ) -> str | None:
    """Repair ``run`` (a unique prefix works) or every run, each fix appended to ``fixes``
    (and printed when ``say``); returns the run id checked next."""
    if run is not None:
        runs = [query.resolve_run(repo, run)]
    else:
        runs = [r.run for r in query.list_runs(repo)]
    fixed = 0
    for run_id in runs:
        try:
            lines = repair(repo, run_id)
        except LedgerBusy as exc:
            if run is not None:
                raise
            fixes.append({"run": run_id, "fix": None, "skipped": str(exc)})
            if say:
                click.echo(f"{run_id}: not repaired: {exc}")
            continue
        for line in lines:
            fixes.append({"run": run_id, "fix": line, "skipped": None})
            if say:
                click.echo(f"{run_id}: {line}")
        fixed += len(lines)
    if say:
        click.echo(f"uet fsck --repair: {fixed} fix{'es' * (fixed != 1)}")
    return runs[0] if run is not None else None
