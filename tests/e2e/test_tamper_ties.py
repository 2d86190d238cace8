"""Without a sandbox, a tool that re-points its worktree at a repository of its making (its
admin dir's ``commondir`` or ``gitdir``, or the worktree's ``.git`` file) is quarantined
``tampered``, the files are put back, and the next workstream in that worktree runs against the
real repository. (With bwrap these files are bound read-only: test_adversarial_admin.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, uet
from tests.e2e.helpers import last_run, setup_repo, states

NO_SANDBOX = '[sandbox]\nmode = "none"\n'
# Each makes a fake repository (one commit) and points one tie of the worktree at it.
FAKE = "git init -q --bare \"$T/fake\"; "
ATTACKS = {
    "commondir": FAKE + "echo \"$T/fake\" > \"$(git rev-parse --git-dir)/commondir\"",
    "gitfile": FAKE + "echo \"gitdir: $T/fake\" > .git",
    "gitdir": "echo /nowhere/.git > \"$(git rev-parse --git-dir)/gitdir\"",
}


def _reason(repo: Path, ws: str) -> str:
    return git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
               f"--grep=^{ws}: ", f"refs/uet/ledger/{last_run(repo)}").strip()


@pytest.mark.parametrize("tie", sorted(ATTACKS))
def test_a_tool_repointing_its_worktree_is_tampered_and_undone(tmp_path: Path, tie: str) -> None:
    t = tmp_path / "t"
    t.mkdir()
    repo = setup_repo(tmp_path / "r", config=NO_SANDBOX, workstreams={
        "evil": {"command": ATTACKS[tie] + "; echo x > x.txt", "env": {"T": str(t)}},
        "after": {"command": "echo a > a.txt", "depends_on": ["evil"]},
        "other": {"command": "echo o > o.txt"}})
    r = uet("run", "-j", "1", cwd=repo)
    assert states(repo)["evil"] == "quarantined", r.stdout + r.stderr
    assert _reason(repo, "evil") == "tampered"
    detail = git(repo, "log", "-1", "--format=%B", "--grep=^evil: ",
                 f"refs/uet/ledger/{last_run(repo)}")
    assert (".git changed" if tie == "gitfile" else f"/{tie} changed") in detail, detail
    # Put back: every slot's ties name the real repository again.
    for admin in (repo / ".git" / "worktrees").iterdir():
        assert (admin / "commondir").read_text().strip() == "../..", admin
        gitfile = Path((admin / "gitdir").read_text().strip())
        assert gitfile.read_text().strip() == f"gitdir: {admin}", gitfile
    assert states(repo)["other"] == "committed"
    assert git(repo, "show", "main:o.txt") == "o"
    assert git(repo, "rev-list", "--count", "main") == "2", "only 'other' landed"
    f = uet("fsck", cwd=repo)
    assert f.returncode == 0, f.stdout + f.stderr
