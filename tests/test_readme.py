"""The README is part of the product: its commands, tables and CI must agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

from uet_git.cli import COMMANDS
from uet_git.ledger.states import transitions_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_transition_table_is_generated_from_the_code() -> None:
    m = re.search(r"<!-- transitions:begin -->\n(.*?)\n<!-- transitions:end -->", README, re.S)
    assert m, "README lost its transitions table markers"
    assert m.group(1).strip() == transitions_markdown().strip()


def test_ci_runs_the_readme_test_command() -> None:
    m = re.search(r"^# 2\..*\n(.+)$", README, re.M)
    assert m, "README lost its second command"
    command = m.group(1).strip()
    assert "pytest" in command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in ci, f"{command!r} is not a line of .ci/run"


def test_every_command_in_usage_exists() -> None:
    usage = README[README.index("## Usage"):README.index("### A workstream")]
    used = set(re.findall(r"^uet (\w+)", usage, re.M))
    assert used, "no commands found in the README's usage"
    assert used <= set(COMMANDS), used - set(COMMANDS)
