"""Moved to ``uet_git.cli.render`` (rendering is the CLI's). Kept only while engine modules
still name ``Reporter``; they take an ``Observer`` (``engine/events.py``) instead, and this file
goes when the last import of it does."""

from uet_git.cli.render import Reporter, inspect_commands, text_table

__all__ = ["Reporter", "inspect_commands", "text_table"]
