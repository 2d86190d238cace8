"""What a worker gives a tool: UET_* variables and port blocks, include files, setup commands,
warm ignored caches; presets run as the real CLI would be (a fake on PATH)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    TOOLS,
    last_run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
)


def test_worker_environment(tmp_path: Path):
    dump = "env | grep '^UET_' | grep -v UET_PROC_TOKEN | sort > env-$UET_WORKSTREAM.txt"
    repo = setup_repo(tmp_path / "r", config="[run]\nport_base = 30000\nport_block = 10\n",
                      workstreams={"one": {"command": dump, "prompt": "do one thing"},
                                   "two": {"command": dump, "env": {"EXTRA": "x"}}})
    run_ok(repo, "run", "--jobs", "2")
    run_id = last_run(repo)
    for ws in ("one", "two"):
        env = dict(line.split("=", 1) for line in
                   git(repo, "show", f"main:env-{ws}.txt").splitlines())
        assert env["UET_RUN"] == run_id and env["UET_WORKSTREAM"] == ws
        worker = int(env["UET_WORKER"])
        assert worker in (0, 1)
        assert env["UET_PORT"] == str(30000 + 10 * worker)
        assert "/uet/worktrees/" in env["UET_WORKTREE"]
        assert not env["UET_WORKTREE"].startswith(str(repo) + "/env")
        assert Path(env["UET_PROMPT_FILE"]).name == "prompt.md"
    assert "UET_PROMPT=do one thing" in git(repo, "show", "main:env-one.txt")


def test_include_setup_and_warm_ignored_files(tmp_path: Path):
    config = '[worktree]\ninclude = [".env"]\nkeep_ignored = true\n'
    warm = "if [ -f .venv/marker ]; then echo warm; else echo cold; fi > warm.txt"
    repo = setup_repo(tmp_path / "r", files={".gitignore": ".env\n.venv/\n", "README.md": "x\n"},
                      config=config, workstreams={
                          "first": {"setup": ["mkdir -p .venv && echo built > .venv/marker"],
                                    "command": "cp .env seen-env.txt"},
                          "second": {"depends_on": ["first"], "command": warm},
                      })
    (repo / ".env").write_text("SECRET=1\n")
    run_ok(repo, "run", "--jobs", "1")
    assert git(repo, "show", "main:seen-env.txt") == "SECRET=1"
    assert git(repo, "show", "main:warm.txt") == "warm"
    # Nothing ignored was taken into the patches.
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert ".env" not in files and not any(f.startswith(".venv") for f in files)


def test_keep_worktrees(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo $UET_RUN > a.txt"}})
    run_ok(repo, "run", "--keep-worktrees")
    worktrees = git(repo, "worktree", "list").splitlines()
    assert len(worktrees) >= 2
    assert all("/.git/uet/worktrees/" in w for w in worktrees[1:])
    assert (repo / ".git" / "uet" / "logs" / last_run(repo)).is_dir()
    # The user's `git status` never shows them.
    assert git(repo, "status", "--porcelain") == ""
    run_ok(repo, "run", "--fresh-worktrees")  # reuses or recreates them, then removes them
    assert len(git(repo, "worktree", "list").splitlines()) == 1


def test_claude_preset_with_a_fake_cli(tmp_path: Path):
    shared = shared_dir(tmp_path)
    fakebin = shared / "bin"
    fakebin.mkdir()
    shutil.copy(TOOLS / "fake_claude", fakebin / "claude")
    argv_file = shared / "argv"
    env = {"PATH": f"{fakebin}{os.pathsep}{os.environ['PATH']}",
           "FAKE_CLAUDE_ARGV": str(argv_file)}
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(shared), workstreams={
        "ai": {"tool": "claude", "prompt": "Write a greeting",
               "acceptance": ["test -s claude.txt"]},
    })
    run_ok(repo, "run", env=env)
    assert git(repo, "show", "main:claude.txt") == "Write a greeting"
    argv = argv_file.read_text().splitlines()
    assert argv[:4] == ["-p", "--output-format", "json", "--permission-mode"]
    assert "Bash(test -s claude.txt *)" in argv
    repo2 = setup_repo(tmp_path / "r2", config=sandbox_writable(shared), workstreams={
        "ai": {"tool": "claude", "prompt": "Write a greeting"}})
    run_ok(repo2, "run", env={**env, "FAKE_CLAUDE_ERROR": "1"}, code=1)
    assert states(repo2) == {"ai": "quarantined"}
    full = git(repo2, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo2)}")
    assert "Uet-Reason: tool-failed" in full and "model refused" in full
