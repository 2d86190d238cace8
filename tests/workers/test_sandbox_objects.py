"""A sandboxed tool must not be able to change objects that already exist: they are what the
base, the candidates and the target are made of."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import run_process

pytestmark = pytest.mark.skipif(sandbox.available() is not None,
                                reason=f"no sandbox here: {sandbox.available()}")


@pytest.mark.xfail(strict=True, reason="the sandbox binds <common>/objects writable so the tool's "
                   "own commits work; it can then overwrite an existing loose object. Next: a "
                   "private object directory per tool, the real store as a read-only alternate")
def test_a_tool_cannot_overwrite_an_existing_object(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"t.txt": "original\n"})
    blob = git(path, "rev-parse", "HEAD:t.txt")
    repo = Repo.open(path)
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(git(path, "rev-parse", "HEAD"))
    try:
        plan = sandbox.sandbox_for(repo, wt.path, SandboxConfig())
        obj = repo.common_dir / "objects" / blob[:2] / blob[2:]
        cmd = (f"new=$(printf 'evil\\n' | git hash-object -w --stdin); "
               f"src=$(git rev-parse --git-common-dir)/objects/$(echo $new | cut -c1-2)/"
               f"$(echo $new | cut -c3-); chmod u+w {obj}; cp $src {obj}")
        run_process(cmd, cwd=wt.path, env={}, timeout=30, stdout_path=tmp_path / "out",
                    stderr_path=tmp_path / "err", sandbox=plan)
    finally:
        pool.release(wt)
        pool.close(remove=True)
    assert git(path, "cat-file", "-p", blob) == "original"
