"""A patch never changes what judges it (issue 10), through the `uet` command: the pre-merge
hooks and uet.toml that judge a candidate are the run's base commit's. A patch that deletes the
hook, `chmod -x`es it, rewrites it to `exit 0` or symlinks it to /bin/true is still judged by
the base's hook (tests/e2e/test_adversarial.py runs those four attacks, declared or not, in
one run); editing uet.toml's [hooks] changes nothing for its own run; a hook a patch plants
never runs on any candidate; a patch that may change the checks is marked."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import last_run, run_ok, setup_repo, states, trailers
from uet_git.engine.verify import MAY_CHANGE_CHECKS
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


def verified_trailers(repo: Path, run_id: str, ws: str) -> dict[str, str]:
    out = git(repo, "log", "--format=%H %s", f"refs/uet/ledger/{run_id}")
    oids = [line.split()[0] for line in out.splitlines()
            if line.split(" ", 1)[1].startswith(f"{ws}: ") and line.endswith("-> verified")]
    assert len(oids) == 1, out
    return trailers(repo, oids[0])


def test_editing_uet_toml_hooks_does_not_change_its_own_checks(tmp_path: Path) -> None:
    config = '[hooks]\npre-merge = ["! grep -rq forbidden --include=*.txt ."]\n'
    repo = setup_repo(tmp_path / "r", config=config, workstreams={
        "toml": {"command": "printf '[hooks]\\npre-merge = []\\n' > uet.toml && "
                            "echo forbidden > toml.txt", "may_change_checks": True},
    })
    run_ok(repo, "run", code=1)
    assert states(repo) == {"toml": "quarantined"}
    assert reasons(repo) == {"toml": "hook-failed"}


def test_a_planted_hook_never_runs_and_the_patch_is_marked(tmp_path: Path) -> None:
    # The planted hook rejects everything: had it run on any candidate (its own or a later
    # one), that workstream would be quarantined hook-failed. (A mark file would not do: in
    # the sandbox a hook's /tmp is its own.)
    planted = ".uet/hooks/pre-merge.d/zz-planted"
    repo = setup_repo(tmp_path / "r", files={"README.md": "x\n", HOOK: REJECT}, workstreams={
        "plant": {"command": f"printf '#!/bin/sh\\necho planted >&2; exit 1\\n' > {planted} && "
                             f"chmod +x {planted}", "may_change_checks": True},
        "later": {"depends_on": ["plant"], "command": "echo later > later.txt"},
        "last": {"depends_on": ["later"], "command": "echo last > last.txt"},
    })
    commit_executable(repo, HOOK)
    run_ok(repo, "run")
    assert states(repo) == dict.fromkeys(("plant", "later", "last"), "committed")
    assert os.access(repo / planted, os.X_OK)  # landed: it judges the runs based on it
    run_id = last_run(repo)
    assert verified_trailers(repo, run_id, "plant").get(MAY_CHANGE_CHECKS) == "true"
    assert MAY_CHANGE_CHECKS not in verified_trailers(repo, run_id, "later")


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
