"""The one commit-message trailer parser and formatter (``Key: value`` lines at the end).

uet's ledger and hooks keep their data in trailers; what ``format_message`` writes,
``parse_trailers`` (and ``git interpret-trailers --parse``) reads back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TRAILER_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9-]*)\s*:\s?(.*)$")
_PARA_RE = re.compile(r"\n[ \t]*\n")


def _trailer_block(block: str) -> dict[str, str]:
    """``{key: value}`` if every line of ``block`` is a trailer (or a continuation), else {}."""
    out: dict[str, str] = {}
    for line in block.splitlines():
        m = _TRAILER_RE.match(line)
        if m is None:
            if line[:1].isspace() and out:  # a continuation line
                key = next(reversed(out))
                out[key] = f"{out[key]} {line.strip()}"
                continue
            return {}  # not a trailer block
        # A key given twice keeps the last value (and its place at the end).
        out.pop(m[1], None)
        out[m[1]] = m[2].strip()
    return out


def split_message(message: str) -> tuple[str, str, dict[str, str]]:
    """(subject, human body without the trailer block, trailers) of a commit message."""
    subject, _, rest = message.strip().partition("\n")
    paragraphs = [p.strip() for p in _PARA_RE.split(rest.strip())] if rest.strip() else []
    paragraphs = [p for p in paragraphs if p]
    trailers = _trailer_block(paragraphs[-1]) if paragraphs else {}
    if trailers:
        paragraphs.pop()
    return subject.strip(), "\n\n".join(paragraphs), trailers


def parse_trailers(message: str) -> dict[str, str]:
    """The trailers of a commit message: ``Key: value`` lines of its last paragraph after the
    subject (the block ``git interpret-trailers --parse`` reads for messages uet writes). A key
    given twice keeps the last value."""
    return split_message(message)[2]


def one_line(value: object) -> str:
    """``value`` as one line: runs of whitespace (newlines included) become one space."""
    return " ".join(str(value).split())


def format_message(subject: str, body: str, trailers: Sequence[tuple[str, str]]) -> str:
    """``subject``, a blank line, ``body`` (if any), a blank line, one ``Key: value`` line per
    trailer (values made one line); ends with a newline."""
    # git stops reading a message at a "---" line (a patch follows), which would hide the
    # trailers from `git interpret-trailers`: indent such body lines.
    body = "\n".join(f" {ln}" if ln.startswith("---") else ln
                     for ln in body.strip().splitlines()).strip()
    parts = [subject.strip()]
    if body:
        parts.append(body)
    if trailers:
        parts.append("\n".join(f"{k}: {one_line(v)}" for k, v in trailers))
    return "\n\n".join(parts) + "\n"
