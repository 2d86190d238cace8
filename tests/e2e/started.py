"""A ``uet`` command started in a child forked from the test process and left running while
the test looks at it from outside (``uet status`` on a live run, a kill -9 or a SIGINT at a
chosen moment, a terminal): what ``subprocess.Popen([python, "-m", "uet_git", ...])`` gave,
a process of its own with its own pid, signal handlers, subreaper flag and exit, without a
new interpreter importing uet again. conftest's ``uet_forked`` is the
same child waited for at once."""

from __future__ import annotations

import io
import locale
import os
import select
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tests.conftest import ForkedChild, main_exit_code, start_forked, std_streams_over_fds


class StartedUet(ForkedChild):
    """The running child: ``pid``, ``poll``/``wait`` (the exit code, or minus the signal that
    ended it), ``send_signal``/``kill``, and ``output`` (what it wrote, once it ended)."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], *,
                 new_session: bool, terminal: int | None) -> None:
        self.argv = argv
        self.returncode: int | None = None
        self._out = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.pid = start_forked(lambda: _run_main(argv, terminal), cwd=cwd, env=env,
                                stdout=self._out.fileno(), stderr=self._err.fileno(),
                                new_session=new_session)

    def timed_out(self, timeout: float) -> Exception:
        return AssertionError(f"uet {' '.join(self.argv)} still running after {timeout:g} s: "
                              f"killed\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL to the child (its whole process group when it leads one) and reap it."""
        if self.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()

    def output(self) -> tuple[str, str]:
        """(stdout, stderr) so far, decoded as ``subprocess.run(text=True)`` would."""
        return _read(self._out), _read(self._err)

    def close(self) -> None:
        self.kill()
        self._out.close()
        self._err.close()

    def __enter__(self) -> StartedUet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_uet(cwd: Path, *args: str, env: dict[str, str] | None = None,
              new_session: bool = False, terminal: int | None = None) -> StartedUet:
    """``uet ARGS`` started in ``cwd`` with ``env`` laid over the environment (and the tests'
    short retry backoff); ``new_session``: the child leads a session and process group of its
    own; ``terminal``: a pty's slave end as its stdin, stdout and stderr."""
    return StartedUet(list(args), cwd, {"UET_RETRY_BACKOFF": "0.05", **(env or {})},
                      new_session=new_session, terminal=terminal)


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30,
               started: StartedUet | None = None) -> None:
    """Poll ``condition()`` every 20 ms until true; fail after ``timeout`` s or (when
    ``started`` is given) as soon as that command has ended."""
    deadline = time.monotonic() + timeout
    while not condition():
        if started is not None and started.poll() is not None:
            raise AssertionError(f"the command ended first ({started.returncode}) before "
                                 f"{what}: {started.output()}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.02)


def _run_main(argv: list[str], terminal: int | None) -> int:
    """In the child: the terminal as fds 0-2 (when given), then ``main(argv)`` as the
    interpreter would end with it."""
    if terminal is not None:
        for fd in (0, 1, 2):
            os.dup2(terminal, fd)
        os.close(terminal)
        std_streams_over_fds()
    return main_exit_code(argv)


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    data = f.read()
    f.seek(0, os.SEEK_END)
    return io.TextIOWrapper(io.BytesIO(data),
                            encoding=locale.getpreferredencoding(False)).read()


def read_terminal(master: int, proc: StartedUet, *, timeout: float = 60,
                  question: bytes | None = None, answer: bytes = b"") -> bytes:
    """What ``proc`` writes on its terminal (``master``'s other end) until it exits or
    ``timeout`` passes; ``answer`` typed once, when ``question`` has been shown."""
    out = b""
    asked = question is None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not asked and question is not None and question in out:
            os.write(master, answer)
            asked = True
        if select.select([master], [], [], 0.1)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end closed, the process is gone
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out
