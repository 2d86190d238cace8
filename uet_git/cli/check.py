"""`uet check REV...`: fail when a uet patch in the range was not committed by the ledger."""

from __future__ import annotations

import click

from uet_git.cli._common import echo_json
from uet_git.errors import EXIT_WORK_FAILED, UetError
from uet_git.gitrepo import Repo
from uet_git.hooks.check import check_revs
from uet_git.ledger.words import plural


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("revs", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--quiet", "-q", is_flag=True, help="Print only the failures.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object (docs/json.md); the exit code is the same.")
def cmd(revs: tuple[str, ...], quiet: bool, as_json: bool) -> None:
    """Check every commit in REV... (git rev-list arguments: `main..feature`, or
    `-- NEW --not --remotes`) that carries a Uet-Workstream trailer: it must be the candidate or
    patch of a workstream the ledger committed (read from refs/uet/ledger/RUN of its Uet-Run),
    or a commit the ledger itself landed or re-integrated (`uet land`, `land --rebase`,
    `land --only`, and the landed commits a rollback reverted). Quarantined, dropped, blocked,
    rolled-back, superseded, forged or unknown patches fail, one line
    each with the reason. Exit 0 when all pass, 1 otherwise. Commits without uet trailers are
    ignored. The git hooks installed by `uet hooks install` run this."""
    repo = Repo.open(".", bare_ok=True)
    checked, problems = check_revs(repo, list(revs))
    if as_json:
        echo_json({"revs": list(revs), "checked": checked, "ok": not problems,
                   "problems": problems})
        if problems:
            raise SystemExit(EXIT_WORK_FAILED)
        return
    for line in problems:
        click.echo(f"uet check: {line}", err=True)
    if problems:
        raise UetError(f"check: {len(problems)} of {plural(checked, 'uet patch', 'uet patches')} "
                       "were not committed by the ledger (see `uet status`, "
                       "`uet show WS --run RUN`)",
                       exit_code=EXIT_WORK_FAILED)
    if not quiet:
        click.echo(f"uet check: {plural(checked, 'uet patch', 'uet patches')}, all committed "
                   "by the ledger")
