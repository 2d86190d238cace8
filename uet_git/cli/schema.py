"""``uet schema``: the JSON Schema of a workstream file (one workstream object; a file may
also hold a list of them)."""

from __future__ import annotations

import click

from uet_git.cli._common import echo_json
from uet_git.spec.models import Workstream


def workstream_schema() -> dict[str, object]:
    schema = Workstream.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


@click.command("schema")
def cmd() -> None:
    """Print the JSON Schema of a workstream file."""
    echo_json(workstream_schema())
