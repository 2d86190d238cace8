"""``uet init``: write ``uet.toml`` (every section, commented) and ``workstreams/example.yaml``
at the repository root (the current directory outside a git repository). Refuses to overwrite:
both targets are checked before either is written."""

from __future__ import annotations

from pathlib import Path

import click

from uet_git.cli._common import project_root
from uet_git.cli.validate import display
from uet_git.errors import UetError

UET_TOML = """\
# uet.toml: run defaults, tools and hooks for uet (https://pypi.org/project/uet-git/).
# Every section is optional; the values below are the defaults. `uet validate` checks this file.

[run]
jobs = 4                       # parallel workers (overridden by --jobs or UET_JOBS)
# target = "main"              # branch to land on (default: the branch checked out now)
workstreams = "workstreams"    # where workstream files are read from (recursively)
land = "end"                   # end | continuous | never: when verified work lands on target
deterministic = false          # true: integrate in a fixed topological order (ties by id)
port_base = 20000              # worker k gets UET_PORT = port_base + k * port_block
port_block = 100

[worktree]
# root = "/fast/disk/uet-worktrees"  # default: <git common dir>/uet/worktrees
keep_ignored = false           # keep ignored files (build caches, venvs) when reusing a worktree
include = []                   # ignored files to copy into new worktrees, e.g. [".env"]

# A tool of your own, used as `tool: mytool` in a workstream. Placeholders: {prompt_file},
# {files}, {workdir}, {log_dir}, {model}. output: worktree | diff | mbox.
# [tools.mytool]
# command = ["mytool", "--message-file", "{prompt_file}", "{files}"]
# output = "worktree"
# env = { MYTOOL_QUIET = "1" }
# model = "some-model"
# stdin = "null"               # null | prompt

[hooks]
# Commands run on every candidate (the integration tip plus a patch) before it is accepted.
pre-merge = []                 # e.g. ["ruff check .", "pytest -q"]

[verify]
max_files = 0                  # refuse patches touching more files than this (0 = no limit)
max_lines = 0                  # refuse patches changing more lines than this (0 = no limit)
rerun_on_candidate = true      # rerun acceptance when the merged tree differs from the patch's

[breaker]
threshold = 3                  # consecutive tool failures that stop starting that tool
"""

EXAMPLE_YAML = """\
# An example workstream. `uet validate` checks it, `uet plan` shows the plan, `uet run` runs it.
# `uet schema` prints the JSON Schema of this format.
id: example                    # [a-z0-9][a-z0-9._-]*, unique; used in git ref names
title: Write a greeting file
# depends_on: [other-id]       # workstreams that must be committed first
tool: shell                    # shell | aider | claude | codex | a [tools.NAME] from uet.toml
command: ["sh", "-c", "echo 'hello from uet' > UET_EXAMPLE.md"]
# prompt: |                    # for AI tools; shell commands get $UET_PROMPT and $UET_PROMPT_FILE
#   Describe the change here.
scope:
  allow: ["UET_EXAMPLE.md"]    # globs: ** spans directories, dir/ means everything below
  # deny: ["secrets/"]
acceptance: ["test -s UET_EXAMPLE.md"]   # commands that must pass on the result
# setup: ["pip install -e ."]  # run in the worktree before the tool
timeout: 60                    # seconds for the tool
retries: 0                     # extra attempts after a tool failure or timeout
# estimate: 30                 # expected seconds, for the critical path
# env: {FEATURE_FLAG: "1"}
"""


@click.command("init")
def cmd() -> None:
    """Write uet.toml and workstreams/example.yaml at the repository root (or the current
    directory outside a git repository). Refuses to overwrite either file."""
    cwd = Path.cwd()
    root, _ = project_root(cwd)
    toml_path = root / "uet.toml"
    example = root / "workstreams" / "example.yaml"
    for target in (toml_path, example):
        if target.exists() or target.is_symlink():
            raise UetError(f"{display(target, cwd)}: already exists; not overwriting anything")
    if (root / "workstreams").exists() and not (root / "workstreams").is_dir():
        raise UetError(f"{display(root / 'workstreams', cwd)}: exists and is not a directory")
    written: list[Path] = []
    try:
        example.parent.mkdir(parents=True, exist_ok=True)
        for target, text in ((toml_path, UET_TOML), (example, EXAMPLE_YAML)):
            with target.open("x", encoding="utf-8") as f:
                written.append(target)
                f.write(text)
    except OSError as exc:
        for target in written:  # all or nothing
            target.unlink(missing_ok=True)
        raise UetError(f"{display(root, cwd)}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {display(toml_path, cwd)}")
    click.echo(f"wrote {display(example, cwd)}")
    click.echo("next: edit them, then `uet validate` and `uet plan`")
