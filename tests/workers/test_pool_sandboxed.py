"""A slot given back ``contained`` is acquired again without the /proc sweep: that is right only
if, the moment a sandboxed command's ``run_process`` returns, nothing it started lives (its PID
namespace is gone, not dying) and nothing of it is left to reap."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import run_process
from uet_git.workers.procfs import children_of, processes_under, read_stat, reap_orphans

pytestmark = pytest.mark.skipif(sandbox.available() is not None,
                                reason=f"no sandbox here: {sandbox.available()}")


def _marked(marker: str) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


def _zombie_children() -> list[str]:
    out = []
    for pid in children_of(os.getpid()) or []:
        p = read_stat(pid)
        if p is not None and p.state == "Z":
            out.append(f"{pid} {p.comm}")
    return out


@pytest.mark.parametrize("daemons", [True, False])
@pytest.mark.parametrize("status", [0, 3])
def test_nothing_a_sandboxed_command_started_outlives_its_return(tmp_path: Path, status: int,
                                                                 daemons: bool) -> None:
    repo = Repo.open(make_repo(tmp_path / "repo", {"README": "readme\n"}))
    head = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(head)
    try:
        for i in range(3):
            # a number for sleep, unique to this run: ~hours
            marker = f"{os.getpid()}{i}.{time.monotonic_ns() % 10**9}"
            plan = sandbox.sandbox_for(repo, wt.path, SandboxConfig())
            assert plan is not None
            # A daemon that left the tool's session, cleared its environment and works in the
            # worktree: only the PID namespace ends it.
            started = (f"setsid env -i sh -c 'sleep {marker}; echo x > leak' </dev/null "
                       f">/dev/null 2>&1 & setsid sh -c 'cd {wt.path} && sleep {marker}' & "
                       "sleep 0.05; " if daemons else "")
            res = run_process(
                f"{started}exit {status}",
                cwd=wt.path, env={}, timeout=30, stdout_path=tmp_path / f"out{i}",
                stderr_path=tmp_path / f"err{i}", sandbox=plan)
            assert res.returncode == status, (tmp_path / f"err{i}").read_text()
            # At once, no sleep: a namespace still dying would show here.
            assert _marked(marker) == []
            assert processes_under(wt.path) == []
            assert not (wt.path / "leak").exists()
        # The sandboxes' inits are reaped (by the next command's run_process, or here): none
        # is left a zombie for good.
        for _ in range(200):
            reap_orphans()
            if not _zombie_children():
                break
            time.sleep(0.01)
        assert _zombie_children() == []
        wt.contained = True
        pool.release(wt)
        wt = pool.acquire(head)  # no sweep: the slot was given back contained
        assert processes_under(wt.path) == []
    finally:
        pool.release(wt)
        pool.close(remove=True)


def test_a_slot_of_a_repository_outside_tmp_sees_it_read_only(tmp_path: Path) -> None:
    # Outside /tmp nothing is bound again read-only (``/`` shows it so): the tool still reads
    # the repository and $HOME, writes only its worktree.
    outside = Path(tempfile.mkdtemp(prefix="uet-test-", dir="/var/tmp"))
    try:
        home = outside / "home"
        home.mkdir()
        (home / "dotfile").write_text("mine\n")
        repo = Repo.open(make_repo(outside / "repo", {"README": "readme\n"}))
        pool = WorktreePool(repo, size=1)
        wt = pool.acquire(git(repo.workdir, "rev-parse", "HEAD"))
        try:
            plan = sandbox.sandbox_for(repo, wt.path, SandboxConfig())
            assert plan is not None
            res = run_process(
                f"cat {repo.workdir}/README {home}/dotfile; echo x > f.txt; "
                f"echo lost > {repo.workdir}/README || echo ro-repo; "
                f"echo lost > {home}/dotfile || echo ro-home; "
                f"git update-ref refs/heads/main HEAD~0 2>/dev/null || echo ro-refs",
                cwd=wt.path, env={"HOME": str(home)}, timeout=30,
                stdout_path=tmp_path / "out", stderr_path=tmp_path / "err", sandbox=plan)
            assert res.returncode == 0, (tmp_path / "err").read_text()
            assert (tmp_path / "out").read_text() == "readme\nmine\nro-repo\nro-home\nro-refs\n"
            assert (wt.path / "f.txt").read_text() == "x\n"
            assert (repo.workdir / "README").read_text() == "readme\n"
            assert (home / "dotfile").read_text() == "mine\n"
        finally:
            pool.release(wt)
            pool.close(remove=True)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
