"""A patch never changes what judges it (issue 10), through the `uet` command: the pre-merge
hooks and uet.toml that judge a candidate are the run's base commit's. A patch that deletes the
hook, `chmod -x`es it, rewrites it to `exit 0` or symlinks it to /bin/true is still judged by
the base's hook (tests/e2e/test_adversarial.py runs those four attacks, declared or not, in
one run); editing uet.toml's [hooks] changes nothing for its own run. (A hook a patch plants
never running on any candidate, and the mark on a patch that may change the checks: the same
file's test_a_hook_planted_by_a_patch_never_runs_on_later_candidates.)"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import last_run, run_ok, setup_repo, states
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query

HOOK = ".uet/hooks/pre-merge.d/check"
REJECT = "#!/bin/sh\nif grep -rq forbidden --include=*.txt .; then echo found >&2; exit 1; fi\n"


def commit_executable(repo: Path, *paths: str) -> None:
    for p in paths:
        (repo / p).chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "executable hooks")


def reasons(repo: Path) -> dict[str, str | None]:
    status = query.run_status(Repo.open(repo), last_run(repo))
    return {r.ws: r.reason for r in status.workstreams}


def test_editing_uet_toml_hooks_does_not_change_its_own_checks(tmp_path: Path) -> None:
    config = '[hooks]\npre-merge = ["! grep -rq forbidden --include=*.txt ."]\n'
    repo = setup_repo(tmp_path / "r", config=config, workstreams={
        "toml": {"command": "printf '[hooks]\\npre-merge = []\\n' > uet.toml && "
                            "echo forbidden > toml.txt", "may_change_checks": True},
    })
    run_ok(repo, "run", code=1)
    assert states(repo) == {"toml": "quarantined"}
    assert reasons(repo) == {"toml": "hook-failed"}


def test_touching_the_checks_without_may_change_checks_is_protected_path(tmp_path: Path) -> None:
    config = ('[hooks]\npre-merge = ["true"]\n'
              '[verify]\nprotected = ["ci/**"]\n')
    repo = setup_repo(tmp_path / "r", config=config, files={"README.md": "x\n", HOOK: REJECT,
                                                           "ci/run": "make\n"}, workstreams={
        "toml": {"command": "printf '[hooks]\\npre-merge = []\\n' > uet.toml"},
        "hook": {"command": f"rm {HOOK}"},
        "ci": {"command": "echo 'exit 0' > ci/run"},
        "fine": {"command": "echo fine > fine.txt"},
    })
    commit_executable(repo, HOOK)
    run_ok(repo, "run", code=1)
    assert states(repo) == {"toml": "quarantined", "hook": "quarantined", "ci": "quarantined",
                            "fine": "committed"}
    assert reasons(repo) == {"toml": "protected-path", "hook": "protected-path",
                             "ci": "protected-path", "fine": None}
