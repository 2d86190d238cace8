"""`uet demo [DIR]`: build the sample repository and run its workstreams."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from uet_git.cli.render import Reporter
from uet_git.commands.demo import build_demo_repo
from uet_git.commands.run import execute_run
from uet_git.engine.options import RunOptions
from uet_git.errors import EXIT_WORK_FAILED
from uet_git.gitrepo import Repo
from uet_git.ledger.query import run_status

INTRO = """\
uet demo: a sample repository at {path}
  a tiny Python package with tests, and 8 workstreams run in parallel worktrees:
  - add-mul, add-div: independent features (land)
  - add-power -> add-mul, add-cli -> add-power + add-div: a dependency chain (lands in order)
  - add-sqrt: its tool writes a wrong function; acceptance tests fail (quarantined)
  - add-stats -> add-sqrt: blocked because its dependency was quarantined
  - bump-minor, bump-major: unordered edits of the same line (one lands, one conflicts)
"""

# What the story must end with; anything else means the demo (or uet) is broken.
EXPECTED_COMMITTED = {"add-mul", "add-div", "add-power", "add-cli"}
EXPECTED_QUARANTINED = {"add-sqrt": "verify-failed"}
EXPECTED_BLOCKED = {"add-stats"}
BUMPS = {"bump-minor", "bump-major"}


@click.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True)
def cmd(directory: Path | None, jobs: int) -> None:
    """Build a sample repository in DIRECTORY (default: a new temporary directory) and run its
    workstreams, then show how to read the result with git itself."""
    path = (directory or Path(tempfile.mkdtemp(prefix="uet-demo-"))).resolve()
    build_demo_repo(path)
    click.echo(INTRO.format(path=path))
    repo = Repo.open(path)
    options = RunOptions(jobs=jobs, deterministic=True, land="end")
    result = execute_run(repo, options, Reporter(options.output))
    click.echo("")
    click.echo(f"The sample repository stays at {path}; try:")
    click.echo(f"  cd {path}")
    click.echo("  git log --oneline --format='%h %s%n    %(trailers:key=Uet-Workstream)' main")
    click.echo("  uet status && uet show add-sqrt --evidence acceptance.log")
    problems = _check_story(repo, result.run_id)
    if problems:
        for problem in problems:
            click.echo(f"uet demo: unexpected outcome: {problem}", err=True)
        raise SystemExit(EXIT_WORK_FAILED)


def _check_story(repo: object, run_id: str | None) -> list[str]:
    """Compare the run's final states with the story the demo tells."""
    if run_id is None:
        return ["the run did not start"]
    records = {r.ws: r for r in run_status(repo, run_id).workstreams}  # type: ignore[arg-type]
    problems = []
    for ws in sorted(EXPECTED_COMMITTED):
        if records[ws].state != "committed":
            problems.append(f"{ws} is {records[ws].state}, expected committed")
    for ws, reason in EXPECTED_QUARANTINED.items():
        if (records[ws].state, records[ws].reason) != ("quarantined", reason):
            problems.append(f"{ws} is {records[ws].state} ({records[ws].reason}), expected "
                            f"quarantined ({reason})")
    for ws in sorted(EXPECTED_BLOCKED):
        if records[ws].state != "blocked":
            problems.append(f"{ws} is {records[ws].state}, expected blocked")
    bumps = sorted((records[b].state, records[b].reason or "") for b in BUMPS)
    if bumps != [("committed", ""), ("quarantined", "conflict")]:
        problems.append(f"bump-minor/bump-major ended {bumps}, expected one committed and one "
                        "quarantined (conflict)")
    return problems
