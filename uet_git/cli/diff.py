"""`uet diff WS [RUN]`: a workstream's change through git's own `git show`, with the user's
pager and colours: the candidate (the patch applied onto the integration tip) against its
parent once there is one, else the patch against the commit it was made on."""

from __future__ import annotations

import sys

import click

from uet_git.cli.complete import complete_run, complete_ws
from uet_git.cli.runarg import RUN_HELP, pick_run
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.terminal import show_to_terminal
from uet_git.ledger import query


def change_of(rec: query.WsRecord) -> tuple[str, str] | None:
    """``(what, commit)``: the commit whose diff against its parent is the workstream's change
    (its candidate, else its patch); None before the tool produced anything."""
    if rec.candidate:
        return "candidate", rec.candidate
    if rec.patch:
        return "patch", rec.patch
    return None


@click.command()
@click.argument("ws", shell_complete=complete_ws)
@click.argument("run_arg", metavar="[RUN]", required=False, shell_complete=complete_run)
@click.option("--run", "run_opt", metavar="RUN", help=RUN_HELP, shell_complete=complete_run)
@click.option("--stat", is_flag=True, help="Only the diff stat (git show --stat).")
@click.option("--patch", "patch_only", is_flag=True,
              help="The patch as the tool made it, even once a candidate exists.")
def cmd(ws: str, run_arg: str | None, run_opt: str | None, stat: bool,
        patch_only: bool) -> None:
    """Show the change of workstream WS in RUN (default: the latest run) with `git show`: the
    candidate commit (the patch applied onto the integration tip) once it was made, else the
    patch commit. git runs with your pager, colours and diff options; hooks, external diff
    drivers and textconv stay off."""
    repo = Repo.open(".", bare_ok=True)
    run_id = query.resolve_run(repo, pick_run(run_arg, run_opt))
    rec = query.ws_status(repo, run_id, ws)
    found = change_of(rec)
    if patch_only and rec.patch:
        found = ("patch", rec.patch)
    if found is None:
        raise UetError(f"{ws} has no patch in run {run_id} ({rec.state}"
                       + (f", {rec.reason}" if rec.reason else "") + "): nothing to show",
                       exit_code=EXIT_WORK_FAILED)
    _, commit = found
    args = ["--stat", "--summary"] if stat else ["--patch-with-stat"]
    sys.exit(show_to_terminal(repo, "show", *args, commit, "--"))
