"""``uet --help`` without click: the top-level help page laid out as click lays it out.

Importing click is most of what ``uet --help`` costs (its core pulls in ``inspect``, ``uuid``,
``platform``...), and the page is only the group's text, two options and the command table.
This is the subset of click's ``HelpFormatter`` that page uses, for plain text (no ANSI
styling, no ``\\b`` blocks); tests/cli/test_helptext.py holds it to click's own output at
several terminal widths.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Sequence

USAGE_ARGS = "[OPTIONS] COMMAND [ARGS]..."
# the group's options, in click's order (its own --version, then the help option)
OPTIONS = (("--version", "Show the version and exit."),
           ("-h, --help", "Show this message and exit."))
HELP_NAMES = ("-h", "--help")
# set, click answers shell completion instead of the command line (click's `_{PROG}_COMPLETE`)
COMPLETE_VAR = "_UET_COMPLETE"


def wanted(args: Sequence[str]) -> bool:
    """Whether ``uet ARGS`` asks for just the top-level help page."""
    return len(args) == 1 and args[0] in HELP_NAMES and COMPLETE_VAR not in os.environ


def render(prog: str, help_text: str, commands: Sequence[tuple[str, str]],
           width: int | None = None) -> str:
    """The page click prints for ``prog --help`` (without the final newline)."""
    width = _width() if width is None else width
    out = [_wrap(USAGE_ARGS, width, f"Usage: {prog} ", " " * len(f"Usage: {prog} ")), "\n"]
    text = _cleandoc(help_text).partition("\f")[0]
    if text:
        out += ["\n", _paragraphs(text, width, "  "), "\n"]
    for heading, rows in (("Options", OPTIONS), ("Commands", commands)):
        out += ["\n", f"{heading}:\n", _definitions(rows, width, indent=2)]
    return "".join(out).rstrip("\n")


def _width() -> int:
    # click: max(min(terminal columns, 80) - 2, 50), the columns as shutil.get_terminal_size
    # finds them (COLUMNS, else the terminal of stdout, else 80); shutil itself is not imported
    # for that (it pulls in the compression modules)
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return max(min(columns, 80) - 2, 50)


def _cleandoc(doc: str) -> str:
    # inspect.cleandoc without importing inspect (click calls it on the help text)
    lines = doc.expandtabs().split("\n")
    margin = min((len(ln) - len(ln.lstrip()) for ln in lines[1:] if ln.lstrip()), default=0)
    lines = [lines[0].lstrip()] + [ln[margin:] for ln in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


def _wrap(text: str, width: int, first: str = "", rest: str = "") -> str:
    return textwrap.TextWrapper(width, initial_indent=first, subsequent_indent=rest,
                                replace_whitespace=False).fill(text.expandtabs())


def _paragraphs(text: str, width: int, indent: str = "") -> str:
    """click's ``wrap_text(..., preserve_paragraphs=True)``: blank lines separate paragraphs,
    each rewrapped with the indent of its first line added."""
    paras: list[tuple[int, str]] = []
    buf: list[str] = []
    lead: int | None = None
    for line in [*text.expandtabs().splitlines(), ""]:
        if not line:
            if buf:
                paras.append((lead or 0, " ".join(buf)))
                buf = []
            lead = None
            continue
        if lead is None:
            lead = len(line) - len(line.lstrip())
            line = line.lstrip()
        buf.append(line)
    return "\n\n".join(_wrap(p, width, indent + " " * n, indent + " " * n) for n, p in paras)


def _definitions(rows: Sequence[tuple[str, str]], width: int, indent: int) -> str:
    """click's ``HelpFormatter.write_dl`` (col_max 30, col_spacing 2) at ``indent``."""
    first_col = min(max(len(name) for name, _ in rows), 30) + 2
    out: list[str] = []
    for name, text in rows:
        out.append(" " * indent + name)
        if not text:
            out.append("\n")
            continue
        if len(name) <= first_col - 2:
            out.append(" " * (first_col - len(name)))
        else:
            out.append("\n" + " " * (first_col + indent))
        lines = _paragraphs(text, max(width - first_col - 2, 10)).splitlines()
        out.append(f"{lines[0]}\n" if lines else "\n")
        out += [" " * (first_col + indent) + ln + "\n" for ln in lines[1:]]
    return "".join(out)
