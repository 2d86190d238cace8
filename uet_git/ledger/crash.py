"""Fault injection for the ledger's crash tests: ``UET_LEDGER_CRASH=POINT[:WS[@STATE]]`` makes
the process ``os._exit(99)`` at POINT (``after-objects``, ``after-prepare``, ``after-commit``)
of a ``record()`` (for WS only, if given; with ``@STATE`` only in the transaction that
records WS's move to STATE, e.g. ``after-prepare:a@committed`` inside ``applied -> verified ->
committed``; ``run:rebase`` selects ``rebase_integration``). In a group commit the points
fire for each workstream of the group (``after-prepare``/``after-commit`` when any of them is
selected), so the crash tests see the same three moments. Unset, it costs one dict lookup."""

from __future__ import annotations

import os
from collections.abc import Sequence

# The crash-test key of ``rebase_integration`` (``UET_LEDGER_CRASH=POINT:run:rebase``); not a
# valid workstream id, so it never selects a ``record()``.
REBASE_CRASH_KEY = "run:rebase"


def crash_point(point: str, ws: str | None, tos: Sequence[str] = ()) -> None:
    spec = os.environ.get("UET_LEDGER_CRASH")
    if not spec:
        return
    want, _, only = spec.partition(":")
    only, _, to = only.partition("@")
    if want == point and (not only or only == ws) and (not to or to in tos):
        os._exit(99)


def armed() -> bool:
    """Whether any crash point is set (the writer then hooks the ref transaction)."""
    return bool(os.environ.get("UET_LEDGER_CRASH"))
