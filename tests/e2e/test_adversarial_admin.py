"""A sandboxed tool cannot re-point its worktree at a repository of its making: the admin
dir's ``commondir``/``gitdir``/``locked`` and the worktree's ``.git`` file are read-only to it
(the rest of the admin dir, its HEAD and index, stays writable so commits work). Before, a tool
that rewrote ``commondir`` sent uet's own git commands in that kept worktree to a fake
repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, uet
from tests.e2e.helpers import setup_repo
from uet_git.workers.sandbox import available

ATTACK = ("gd=$(git rev-parse --git-dir); git init -q --bare fake; "
          "echo \"$PWD/fake\" > \"$gd/commondir\"; echo c=$? >> \"$ATTACK_LOG\"; "
          "echo 'gitdir: /nowhere' > .git; echo g=$? >> \"$ATTACK_LOG\"; "
          "rm -f \"$gd/locked\"; echo l=$? >> \"$ATTACK_LOG\"; rm -rf fake; echo x > x.txt")


def test_a_tool_cannot_repoint_its_worktree(tmp_path: Path) -> None:
    if available() is not None:
        pytest.skip(f"bwrap unusable: {available()}")
    log = tmp_path / "attack.log"
    log.write_text("")
    repo = setup_repo(tmp_path / "r", workstreams={
        "evil": {"command": ATTACK, "env": {"ATTACK_LOG": str(log)}},
        "after": {"command": "echo a > a.txt", "depends_on": ["evil"]}},
        config=f"[sandbox]\nwritable = [{str(log)!r}]\n")
    r = uet("run", "-j", "1", cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
    codes = dict(line.split("=") for line in log.read_text().split())
    assert codes["c"] != "0" and codes["g"] != "0" and codes["l"] != "0", codes
    slot = repo / ".git" / "uet" / "worktrees" / "0"
    assert (slot / ".git").read_text().startswith(f"gitdir: {repo / '.git' / 'worktrees'}")
    admin = Path((slot / ".git").read_text().split(" ", 1)[1].strip())
    assert (admin / "commondir").read_text().strip() == "../.."
    assert (admin / "locked").is_file()
    assert git(repo, "show", "main:a.txt") == "a" and git(repo, "show", "main:x.txt") == "x"
    f = uet("fsck", cwd=repo)
    assert f.returncode == 0, f.stdout + f.stderr
