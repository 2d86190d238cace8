"""A run's checks come from its base commit, not from the checkout's uncommitted uet.toml."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import last_run, run_ok, setup_repo, states

CONFIG = '[hooks]\npre-merge = ["! grep -rq forbidden --include=*.txt ."]\n'


def _repo(tmp_path: Path) -> Path:
    return setup_repo(tmp_path / "r", config=CONFIG, workstreams={
        "bad": {"command": "echo forbidden > bad.txt"}})


def test_the_checkouts_uncommitted_uet_toml_does_not_judge(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "uet.toml").write_text("[hooks]\npre-merge = []\n")  # not committed
    proc = run_ok(repo, "run", code=1)
    assert states(repo) == {"bad": "quarantined"}
    reasons = git(repo, "log", "--format=%(trailers:key=Uet-Reason,valueonly)",
                  f"refs/uet/ledger/{last_run(repo)}").split()
    assert reasons == ["hook-failed"]
    assert "differ from the base commit" in proc.stdout + proc.stderr
    assert "bad.txt" not in git(repo, "ls-tree", "-r", "--name-only", "main")


def test_checks_from_checkout_is_the_users_explicit_choice(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "uet.toml").write_text("[hooks]\npre-merge = []\n")
    git(repo, "update-index", "--assume-unchanged", "uet.toml")  # landing keeps local edits
    run_ok(repo, "run", "--checks-from-checkout", code=0)
    assert states(repo) == {"bad": "committed"}
