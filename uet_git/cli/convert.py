"""``uet convert PATH... -o DIR``: legacy bundles (and native files) -> one native YAML per
workstream, with a report.

The report (stdout) has one line per bundle: ``converted``, ``warned`` (each warning listed
under it) or ``refused`` with the reason; then every converted workstream whose dependency was
refused or is missing (``unresolved dependency: ...``; the dependency is kept in the file, so
``uet plan`` will refuse the set until it is resolved); then a summary. Converted files are
written even when other bundles are refused. Exit 0 when everything converted and every
dependency resolves, else 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from uet_git.errors import EXIT_INVALID
from uet_git.spec.convert import convert_paths, report, unresolved, write_outputs


@click.command("convert")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Directory for the converted YAML files (created if missing).")
@click.option("--force", is_flag=True, help="Overwrite existing files in the output directory.")
@click.option("-v", "--verbose", is_flag=True, help="Also list what was mapped where.")
def cmd(paths: tuple[Path, ...], out_dir: Path, force: bool, verbose: bool) -> None:
    """Convert legacy workstream bundles (files or directories, read recursively) into native
    YAML workstreams in DIR, one file per workstream, and report what was converted, converted
    with warnings, or refused. Exit 2 if anything was refused or a dependency is unresolved."""
    outcomes = convert_paths(list(paths), exclude=out_dir)
    write_outputs(outcomes, out_dir, force=force)
    problems = unresolved(outcomes)
    for line in report(outcomes, problems, verbose=verbose):
        click.echo(line)
    if problems or any(o.workstream is None for o in outcomes):
        sys.exit(EXIT_INVALID)
