"""`uet resume` finishes or undoes a landing cut short by a kill before anything else, even when
the resumed run lands nothing itself (--land never)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.commands.landkit import fsck_clean, head_of
from tests.conftest import git, make_repo, uet

MINE = b"the user's own edit kept\n"
CRASHED = 137


def test_land_killed_then_resume_with_land_never_leaves_a_clean_checkout(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "proj", {"a.txt": "alpha\n", "c.txt": "gamma\n"})
    (path / "workstreams").mkdir()
    for i in range(3):
        (path / "workstreams" / f"w{i}.yaml").write_text(yaml.safe_dump(
            {"id": f"w{i}", "command": f"printf '{i}\\n' > f{i}.txt"}))
    git(path, "add", "workstreams")
    git(path, "commit", "-q", "-m", "workstreams")
    base = head_of(path)
    assert uet("run", "--land", "never", cwd=path).returncode == 0
    run = git(path, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/")
    (path / "c.txt").write_bytes(MINE)
    crashed = uet("land", run, cwd=path, env={"UET_BRANCH_CRASH": "mid-checkout"})
    assert crashed.returncode == CRASHED
    proc = uet("resume", run, "--land", "never", cwd=path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "interrupted landing" in proc.stdout
    # Nothing landed, and the checkout is as a never-started `merge --ff-only` leaves it.
    assert head_of(path) == base
    assert git(path, "status", "--porcelain") == "M c.txt"
    assert (path / "c.txt").read_bytes() == MINE
    assert not (path / ".git/index.lock").exists()
    fsck_clean(path)
