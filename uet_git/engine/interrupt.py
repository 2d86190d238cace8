"""Signals during a run: SIGINT and SIGTERM set the run's cancel event instead of raising in
the middle of a ledger transition; a second Ctrl-C leaves at once."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any

from uet_git.errors import EXIT_INTERRUPTED


class CancelOnSignals:
    """While entered (in the main thread), SIGINT/SIGTERM set ``cancel``."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> CancelOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(ValueError, OSError):
                    self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.cancel.is_set() and signum == signal.SIGINT:
            # A second Ctrl-C: leave now. Everything recorded stays; `uet resume` stops the
            # tools still running and snapshots their worktrees.
            os._exit(EXIT_INTERRUPTED)
        self.cancel.set()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)
