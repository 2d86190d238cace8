"""Transitional: the old entry points of ``uet resume``/``uet retry`` and ``uet land --rebase``,
until their callers (``cli/resume.py``, ``commands/actions.py``, ``commands/land.py``) call
``uet_git.commands.resume.resume_run`` and ``uet_git.engine.rebase.reintegrate`` with an
observer of their own. Delete this module then; nothing new may import it."""

from __future__ import annotations

from uet_git.cli.render import Reporter
from uet_git.commands import resume as resume_command
from uet_git.engine.options import RunOptions, RunResult
from uet_git.engine.rebase import reintegrate
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger


def resume_run(repo: Repo, run_id: str | None, options: RunOptions, *,
               only: set[str] | None = None) -> RunResult:
    return resume_command.resume_run(repo, run_id, options, Reporter(options.output), only=only)


def rebase_run(repo: Repo, ledger: Ledger, onto: str, options: RunOptions) -> RunResult:
    result = reintegrate(repo, ledger, onto, options, Reporter(options.output))
    message = f"re-integrated {len(result.integrated)} workstreams onto {onto[:12]}"
    if result.skipped:
        message += f" ({', '.join(result.skipped)} already there)"
    return RunResult(ledger.run, 0, {"committed": len(result.integrated)}, False, message)
