"""Which ``gc.pid`` means a pruning ``git gc`` is running now (the writer waits for it)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.keepalive import pruning_gc


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_gc_pid_of_a_dead_process_on_this_host_is_stale(tmp_path: Path) -> None:
    # Left by a gc killed mid-round: git reads it as stale; the writer used to wait 120 s.
    repo = Repo.open(make_repo(tmp_path / "r", {"a.txt": "a\n"}))
    (repo.common_dir / "gc.pid").write_text(f"{_dead_pid()} {socket.gethostname()}")
    assert pruning_gc(repo) is None


def test_a_running_prune_and_another_hosts_gc_are_waited_for(tmp_path: Path) -> None:
    repo = Repo.open(make_repo(tmp_path / "r", {"a.txt": "a\n"}))
    # A live process whose command line asks for a prune, as `git gc --prune=now`'s does.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             "--prune=now"])
    try:
        # Popen can return while the child's exec is still under way (an empty cmdline);
        # git writes gc.pid from a process long past that.
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"--prune=now" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        (repo.common_dir / "gc.pid").write_text(f"{proc.pid} {socket.gethostname()}")
        assert pruning_gc(repo) is not None
        (repo.common_dir / "gc.pid").write_text(f"{_dead_pid()} some-other-host")
        assert pruning_gc(repo) is not None  # cannot look at another host's processes
    finally:
        proc.kill()
        proc.wait()
