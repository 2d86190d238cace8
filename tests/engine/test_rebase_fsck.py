"""`uet land --rebase` end to end, then `uet fsck`: the integration chain of a re-integrated run
starts at the target's new tip (``Uet-Onto`` of the ``run: rebase`` event), through rollback,
retry and drop; and fsck still sees a wrong integration ref after a rebase."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    fsck_clean,
    last_run,
    ledger_subjects,
    run,
    run_ok,
    setup_repo,
    states,
    trailers,
)
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo


def target_moves(repo: Path) -> str:
    """Someone else commits on main (the checked-out target); returns its new tip."""
    (repo / "other.txt").write_text("someone else\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "someone else")
    return git(repo, "rev-parse", "main")


def rebase_event(repo: Path, run_id: str) -> str:
    out = git(repo, "log", "--format=%H %s", f"refs/uet/ledger/{run_id}")
    found = [line.split(" ", 1)[0] for line in out.splitlines()
             if line.split(" ", 1)[1] == "run: rebase"]
    assert len(found) == 1, out
    return found[0]


def fsck_lines(repo: Path) -> tuple[int, list[str]]:
    proc = run(repo, "fsck")
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout.strip().splitlines()


def test_land_rebase_rollback_retry_drop_stay_fsck_clean(tmp_path: Path) -> None:
    marks = tmp_path / "marks"  # outside the worktree: writable for the sandboxed tool
    marks.mkdir()
    mark = marks / "flaky-mark"
    repo = setup_repo(tmp_path / "r", config=f'[sandbox]\nwritable = ["{marks}"]\n', workstreams={
        "a": {"command": "echo a > a.txt"},
        "e": {"depends_on": ["a"], "command": "echo e > e.txt"},
        "b": {"command": f"test -f {mark} || {{ touch {mark}; exit 3; }}; echo b > b.txt"},
        "c": {"depends_on": ["b"], "command": "echo c > c.txt"},
        "d": {"command": "exit 4"},
    })
    base = git(repo, "rev-parse", "main")
    run_ok(repo, "run", "--land", "never", code=1)
    run_id = last_run(repo)
    iref = f"refs/uet/integration/{run_id}"
    assert states(repo) == {"a": "committed", "e": "committed", "b": "quarantined",
                            "c": "blocked", "d": "quarantined"}
    old = git(repo, "rev-parse", iref)
    fsck_clean(repo)

    moved = target_moves(repo)
    run_ok(repo, "land", run_id, "--rebase")
    new = git(repo, "rev-parse", iref)
    assert git(repo, "rev-parse", "main") == new
    assert git(repo, "rev-parse", f"{new}~2") == moved  # a, e re-integrated onto the new tip
    assert trailers(repo, rebase_event(repo, run_id)) == {
        "Uet-Run": run_id, "Uet-Onto": moved, "Uet-Previous-Integration": old,
        "Uet-Integration": new}
    # The commits between the base and the new tip are the target's own, not this run's.
    assert git(repo, "rev-list", "--count", f"{base}..{new}") == "3"
    fsck_clean(repo)

    run_ok(repo, "rollback", run_id)
    assert git(repo, "rev-parse", "main") == moved
    assert states(repo)["a"] == states(repo)["e"] == "rolled-back"
    fsck_clean(repo)

    run_ok(repo, "retry", "b", "--run", run_id)
    assert states(repo)["b"] == states(repo)["c"] == "committed"
    assert git(repo, "rev-parse", f"{iref}~2") == new  # on top of the rebased chain
    fsck_clean(repo)

    run_ok(repo, "drop", "d", "--run", run_id)
    assert states(repo) == {"a": "rolled-back", "e": "rolled-back", "b": "committed",
                            "c": "committed", "d": "dropped"}
    assert ledger_subjects(repo).count("run: rebase") == 1
    fsck_clean(repo)


def test_fsck_still_detects_a_wrong_integration_ref_after_a_rebase(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        ws: {"command": f"echo {ws} > {ws}.txt"} for ws in ("a", "b", "c")})
    run_ok(repo, "run", "--land", "never")
    run_id = last_run(repo)
    iref = f"refs/uet/integration/{run_id}"
    old = git(repo, "rev-parse", iref)
    moved = target_moves(repo)
    run_ok(repo, "land", run_id, "--rebase")
    new = git(repo, "rev-parse", iref)
    chain = git(repo, "rev-list", "--first-parent", "--reverse", f"{moved}..{new}").split()
    order = [git(repo, "log", "-1", "--format=%(trailers:key=Uet-Workstream,valueonly)",
                 c).strip() for c in chain]
    assert sorted(order) == ["a", "b", "c"]
    fsck_clean(repo)

    # The last workstream's change re-made on the first one's commit: the middle one, a
    # committed patch, is skipped. One line.
    last = order[-1]
    r = Repo.open(repo)
    tree = objects.build_tree(r, chain[0], {f"{last}.txt": f"{last}\n".encode()})
    skip = objects.make_commit(r, tree, [chain[0]], git(repo, "log", "-1", "--format=%B",
                                                        chain[-1]))
    git(repo, "update-ref", iref, skip, new)
    code, lines = fsck_lines(repo)
    assert (code, lines) == (1, [f"{run_id}: {order[1]} is committed but not on {iref}"])

    # Back at the chain from before the rebase: it does not start at the new tip. One line.
    git(repo, "update-ref", iref, old, skip)
    code, lines = fsck_lines(repo)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(
        f"{run_id}: {iref} ({old[:12]}) does not descend first-parent from {moved[:12]}")

    git(repo, "update-ref", iref, new, old)
    fsck_clean(repo)
