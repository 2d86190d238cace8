"""The sandbox's private /tmp hides what lives under /tmp, except what a tool needs to start:
the programs and files its command names by an absolute path and the directories on PATH stay
visible, read-only. A checkout, a virtualenv or a test's tools kept under /tmp still work."""

from __future__ import annotations

import shutil
import tempfile
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


@pytest.fixture
def env():
    # These tests are about paths under /tmp: a directory there, wherever tmp_path lives.
    tmp = Path(tempfile.mkdtemp(prefix="uet-sandbox-tmp-", dir="/tmp"))
    repo = Repo.open(make_repo(tmp / "repo", {"README": "readme\n"}))
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(git(repo.workdir, "rev-parse", "HEAD"))
    yield repo, wt.path, tmp
    pool.release(wt)
    pool.close(remove=True)
    shutil.rmtree(tmp, ignore_errors=True)


def _run(repo: Repo, wt: Path, tmp: Path, cmd: str | list[str], env: dict[str, str] | None = None
         ) -> tuple[int | None, str]:
    plan = sandbox.sandbox_for(repo, wt, SandboxConfig())
    assert plan is not None
    logs = tmp / "logs"
    logs.mkdir(exist_ok=True)
    r = run_process(cmd, cwd=wt, env=env or {}, timeout=30, stdout_path=logs / "out",
                    stderr_path=logs / "err", sandbox=plan)
    return r.returncode, (logs / "out").read_text() + (logs / "err").read_text()


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_a_tool_named_by_an_absolute_tmp_path_runs(env) -> None:
    repo, wt, tmp = env
    tool = _script(tmp / "tools" / "tool", 'echo from-the-tool > made.txt')
    code, out = _run(repo, wt, tmp, f"{tool} --flag")
    assert code == 0, out
    assert (wt / "made.txt").read_text() == "from-the-tool\n"
    code, out = _run(repo, wt, tmp, [str(tool)])
    assert code == 0, out


def test_a_program_on_a_tmp_path_entry_runs(env) -> None:
    repo, wt, tmp = env
    bindir = tmp / "venv" / "bin"
    _script(bindir / "mytool", "echo on-path")
    code, out = _run(repo, wt, tmp, "mytool", env={"PATH": f"{bindir}:/usr/bin:/bin"})
    # PATH of the command's own environment is not uet's: only uet's PATH entries are bound.
    assert code != 0
    del out


def test_what_is_named_stays_read_only_and_the_rest_of_tmp_hidden(env) -> None:
    repo, wt, tmp = env
    tool = _script(tmp / "tools" / "tool", "true")
    data = tmp / "tools" / "data.txt"
    data.write_text("beside the tool\n")
    secret = tmp / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not for tools\n")
    code, out = _run(repo, wt, tmp, f"{tool} && cat {data}")
    assert code == 0, out  # the program's directory is visible
    # A path that is not spelled in the command (built at run time) stays hidden.
    hidden = str(secret).replace("/tmp/", "/tm''p/", 1)
    code, _ = _run(repo, wt, tmp, f"{tool} && cat {hidden}")
    assert code != 0
    # A named data file does not make its directory visible.
    code, _ = _run(repo, wt, tmp, f"cat {secret}")
    assert code != 0
    code, _ = _run(repo, wt, tmp, f"{tool} && echo x > {tool.parent}/planted")
    assert code != 0
    assert not (tool.parent / "planted").exists()


def test_named_tmp_paths_reads_sh_c_strings() -> None:
    argv = ["sh", "-c", "VAR=/tmp/a/b python /tmp/c/d.py --out=/tmp/e 'unclosed"]
    assert sandbox.named_tmp_paths(argv) == []  # unsplittable shell names nothing extra
    names = sandbox.named_tmp_paths(["/tmp/nonexistent/tool", "x"])
    assert names == []  # what does not exist is not bound
