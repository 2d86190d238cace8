"""Tools in bubblewrap: they commit in their worktree and can touch nothing else of the
repository; what they start dies with them; their output reaches the log files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import ProcResult, run_process

pytestmark = pytest.mark.skipif(sandbox.available() is not None,
                                reason=f"no sandbox here: {sandbox.available()}")


@pytest.fixture
def env(tmp_path: Path):
    repo = Repo.open(make_repo(tmp_path / "repo", {"README": "user's readme\n"}))
    git(repo.workdir, "config", "user.name", "T")
    git(repo.workdir, "config", "user.email", "t@example.com")
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(git(repo.workdir, "rev-parse", "HEAD"))
    yield repo, wt.path, tmp_path / "logs"
    pool.release(wt)
    pool.close(remove=True)


def _run(repo: Repo, wt: Path, logs: Path, cmd: str | list[str], **kw) -> ProcResult:
    plan = sandbox.sandbox_for(repo, wt, kw.pop("config", SandboxConfig()),
                               extra_writable=kw.pop("extra_writable", ()))
    assert plan is not None
    return run_process(cmd, cwd=wt, env=kw.pop("env", {}), timeout=30,
                       stdout_path=logs / "out", stderr_path=logs / "err", sandbox=plan, **kw)


def test_commit_in_the_worktree_works(env) -> None:
    repo, wt, logs = env
    r = _run(repo, wt, logs, "echo new > f.txt && git add f.txt && git commit -qm tool")
    assert r.returncode == 0, (logs / "err").read_text()
    assert git(wt, "log", "-1", "--format=%s") == "tool"
    assert git(wt, "show", "HEAD:f.txt") == "new"


def test_refs_config_and_the_users_checkout_are_read_only(env) -> None:
    repo, wt, logs = env
    main = git(repo.workdir, "rev-parse", "main")
    config = (repo.common_dir / "config").read_bytes()
    for cmd in (f"git update-ref refs/heads/main {main}~0 && git update-ref refs/heads/main "
                f"$(git commit-tree -m x HEAD^{{tree}})",
                "git config core.hooksPath /tmp/evil",
                "git config --worktree core.fsmonitor /tmp/evil",
                f"echo lost > {repo.workdir}/README",
                "echo lost > ../../../../README",  # the worktree is <top>/.git/uet/worktrees/0
                "echo lost > ../../../README",
                f"mkdir {repo.common_dir}/hooks/x",
                f"echo x > {repo.common_dir}/info/exclude"):
        r = _run(repo, wt, logs, cmd)
        assert r.returncode != 0, cmd
    assert git(repo.workdir, "rev-parse", "main") == main
    assert (repo.common_dir / "config").read_bytes() == config
    assert (repo.workdir / "README").read_text() == "user's readme\n"
    assert git(repo.workdir, "config", "--get", "core.hooksPath", check=False) == ""


def test_a_setsid_daemon_is_gone_when_the_tool_exits(env) -> None:
    repo, wt, logs = env
    marker = f"{os.getpid()}.{time.monotonic_ns() % 10**6}"
    r = _run(repo, wt, logs,
             f"setsid env -i sh -c 'cd /; sleep 0.3; echo x > {wt}/leak; sleep {marker}' & "
             "sleep 0.05")
    assert r.returncode == 0
    time.sleep(0.5)
    assert not (wt / "leak").exists()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            assert marker.encode() not in cmdline


def test_the_log_files_get_the_output_and_private_tmp(env, tmp_path: Path) -> None:
    repo, wt, logs = env
    (tmp_path / "host-file").write_text("host")
    r = _run(repo, wt, logs, f"echo out; echo err >&2; touch /tmp/t; "
                             f"test -e {tmp_path}/host-file || echo hidden; echo $TMPDIR; "
                             'test -d "$HOME" && ! touch "$HOME/x" 2>/dev/null && echo ro-home',
             env={"TMPDIR": str(tmp_path)})
    assert r.returncode == 0
    # /tmp is private: the host's tmp_path (outside the repository) is not there; $HOME (here
    # under /tmp) is visible, read-only.
    assert (logs / "out").read_text() == "out\nhidden\n/tmp\nro-home\n"
    assert (logs / "err").read_text() == "err\n"
    assert not (Path(os.environ["HOME"]) / "x").exists()
    assert not Path("/tmp/t").exists()


def test_writable_and_extra_writable_paths(env, tmp_path: Path) -> None:
    repo, wt, logs = env
    cache, tool_logs = tmp_path / "cache", tmp_path / "tool-logs"
    cache.mkdir()
    tool_logs.mkdir()
    cfg = SandboxConfig(writable=[str(cache), "~/.definitely-missing-uet-dir"])
    r = _run(repo, wt, logs, f"echo c > {cache}/x && echo l > {tool_logs}/chat.md",
             config=cfg, extra_writable=[tool_logs])
    assert r.returncode == 0, (logs / "err").read_text()
    assert (cache / "x").read_text() == "c\n" and (tool_logs / "chat.md").read_text() == "l\n"


def test_network_can_be_cut(env) -> None:
    repo, wt, logs = env
    r = _run(repo, wt, logs, "cat /proc/net/dev", config=SandboxConfig(network=False))
    assert r.returncode == 0
    ifaces = [ln.split(":")[0].strip() for ln in (logs / "out").read_text().splitlines()[2:]]
    assert ifaces == ["lo"]


def test_missing_executable_and_mode_none(env) -> None:
    repo, wt, logs = env
    r = _run(repo, wt, logs, ["no-such-tool-uet"])
    assert r.returncode is None and r.error == "executable not found: no-such-tool-uet"
    assert sandbox.sandbox_for(repo, wt, SandboxConfig(mode="none")) is None
    assert sandbox.available() is None

