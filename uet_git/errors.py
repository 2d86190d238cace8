"""The one exception type a user can cause.

Below every package in DESIGN.md's table (it imports nothing), so any layer may raise it and the
CLI turns it into one line and an exit code instead of a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_WORK_FAILED = 1
EXIT_INVALID = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class UetError(Exception):
    """A user-facing error: ``str(err)`` is one line saying what and where."""

    exit_code: int = EXIT_INVALID

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
