"""Kill -9 in the middle of `uet land` / `uet rollback`, at every step of the journaled move,
then the same command again: it finishes or undoes the interrupted move and completes. Checked
with the git CLI: the target at the expected commit, `git status` showing only the user's own
changes, no `index.lock` left, `git fsck --strict` clean, one recorded landing/rollback.

The crash points: ``UET_BRANCH_CRASH`` names one inside ``gitrepo.branch.fast_forward``;
``UET_TEST_CRASH_AT`` one of the journal's (``land:intent``: the intent is recorded, nothing
touched yet; ``land:moved``: moved, the closing event not yet recorded; ``rollback:ref-moved``:
a rollback by reset moved the ref, no checkout brought back yet)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.commands.landkit import Built, fsck_clean, head_of, scripted_run
from tests.conftest import git, make_repo, module_git_env, uet
from tests.gitrepo.test_branch import copy_checkout
from uet_git.commands.journal import open_intent
from uet_git.commands.land import land_events
from uet_git.gitrepo.branch import CRASH_POINTS
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query

# New files in GEN_DIRS top-level directories: the mid-checkout crash point writes whole
# top-level groups up to half of the changes, so it leaves a real half (a.txt, b.txt, gen0/,
# gen1/ written; gen2/, gen3/ not).
N_FILES = 60
GEN_DIRS = 4
MINE = b"the user's own edit \x00 kept\r\n"
CRASHED = 137

BRANCH_POINTS = [("UET_BRANCH_CRASH", p) for p in CRASH_POINTS]
JOURNAL_LAND = [("UET_TEST_CRASH_AT", p) for p in ("land:intent", "land:moved")]


def _big_run(path: Path) -> Built:
    changes: dict[str, bytes | None] = {
        f"gen{i % GEN_DIRS}/f{i:04d}.txt": f"file {i}\n".encode() for i in range(N_FILES)}
    changes["a.txt"] = b"alpha changed\n"
    changes["b.txt"] = None
    return scripted_run(path, [("ws-big", "committed", changes)])


def _copy(b: Built, path: Path) -> Built:
    """The same run in a copy of its repository (refs, ledger, checkout and all; the
    checkout's files hard-linked: write one only after unlinking it)."""
    copy_checkout(b.path, path)
    return replace(b, path=path, repo=Repo.open(path), candidates=dict(b.candidates),
                   patches=dict(b.patches))


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Built once per module, copied for each test: the run before landing, and the run
    landed on a checkout with the user's own work in it."""
    root = tmp_path_factory.mktemp("land-crash")
    with module_git_env(root):
        before = _big_run(root / "before")
        after = _copy(before, root / "landed")
        with_user_work(after)
        proc = uet("land", after.run, cwd=after.path)
        assert proc.returncode == 0, proc.stderr
    return {"before": before, "landed": after}


@pytest.fixture
def big(tmp_path: Path, templates: dict[str, Built]) -> Built:
    """A run with one committed workstream changing N_FILES + 2 files, not landed."""
    return _copy(templates["before"], tmp_path / "repo")


@pytest.fixture
def landed(tmp_path: Path, templates: dict[str, Built]) -> Built:
    """The same run landed, with the user's own work in the checkout."""
    return _copy(templates["landed"], tmp_path / "repo")


def generated(b: Built) -> list[Path]:
    """The landing's new files found in the checkout."""
    return [f for d in b.path.glob("gen*") for f in d.rglob("*") if f.is_file()]


def with_user_work(b: Built) -> None:
    (b.path / "src/c.txt").unlink()  # hard-linked to the template's (see _copy)
    (b.path / "src/c.txt").write_bytes(MINE)  # a tracked file the landing does not change
    (b.path / "mine.txt").write_text("untracked, mine\n")


def status_entries(path: Path) -> list[tuple[str, ...]]:
    """`git status --porcelain=v2 -uall` as (kind, XY, path) for a changed tracked entry and
    (kind, path) for an untracked file: in one git process what `diff --cached --name-only`
    (X), `diff --name-only` (Y) and `ls-files --others --exclude-standard` (`?`) answer.
    Without optional locks, so it leaves the index as those read-only commands do."""
    out = git(path, "--no-optional-locks", "status", "--porcelain=v2", "--untracked-files=all")
    entries: list[tuple[str, ...]] = []
    for line in out.splitlines():
        if line.startswith("? "):
            entries.append(("?", line[2:]))
        elif line.startswith("1 "):  # `1 XY sub mH mI mW hH hI path`
            fields = line.split(" ", 8)
            entries.append(("1", fields[1], fields[8]))
        else:  # a rename or a conflict: never expected here, kept whole so the test shows it
            entries.append((line,))
    return entries


def user_only_status(path: Path) -> None:
    """Nothing staged, the user's tracked edit (src/c.txt) and untracked file (mine.txt)."""
    assert status_entries(path) == [("1", ".M", "src/c.txt"), ("?", "mine.txt")]
    assert (path / "src/c.txt").read_bytes() == MINE
    assert not (path / ".git/index.lock").exists()
    assert not list((path / ".git").glob("uet-ff-index*"))


def refs_at(path: Path, *revs: str) -> list[str]:
    """What `git rev-parse REV` answers for each rev, in one git process."""
    return git(path, "rev-parse", *revs).splitlines()


def assert_landed(b: Built) -> None:
    assert refs_at(b.path, "refs/heads/main", "HEAD") == [b.tip, b.tip]
    assert (b.path / "a.txt").read_text() == "alpha changed\n"
    assert not (b.path / "b.txt").exists()
    assert len(generated(b)) == N_FILES
    user_only_status(b.path)


@pytest.mark.parametrize(("var", "point"), [*BRANCH_POINTS, *JOURNAL_LAND])
def test_land_killed_then_land_again(big: Built, var: str, point: str) -> None:
    b = big
    with_user_work(b)
    crashed = uet("land", b.run, cwd=b.path, env={var: point})
    assert crashed.returncode == CRASHED, crashed.stderr
    assert open_intent(b.repo, b.run) is not None
    again = uet("land", b.run, cwd=b.path)
    assert again.returncode == 0, again.stderr
    assert "interrupted landing" in again.stdout
    assert_landed(b)
    assert [(e.previous, e.landed) for e in land_events(b.repo, b.run)] == [(b.base, b.tip)]
    assert open_intent(b.repo, b.run) is None
    assert query.run_status(b.repo, b.run).landed
    fsck_clean(b.path)
    assert uet("fsck", b.run, cwd=b.path).returncode == 0
    # Nothing left to recover: the next land only says it is there.
    third = uet("land", b.run, cwd=b.path)
    assert third.returncode == 0 and "interrupted" not in third.stdout


def test_land_killed_after_the_ref_moved_then_rollback(big: Built) -> None:
    """The ref had moved: rollback first finishes the landing, then rolls it back."""
    b = big
    with_user_work(b)
    crashed = uet("land", b.run, cwd=b.path, env={"UET_BRANCH_CRASH": "after-ref"})
    assert crashed.returncode == CRASHED
    proc = uet("rollback", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "finished an interrupted landing" in proc.stdout
    assert [(e.previous, e.landed) for e in land_events(b.repo, b.run)] == [(b.base, b.tip)]
    assert head_of(b.path) == b.base
    assert (b.path / "a.txt").read_text() == "alpha\n" and (b.path / "b.txt").exists()
    assert not any(b.path.glob("gen*"))
    user_only_status(b.path)
    fsck_clean(b.path)


def test_land_killed_mid_checkout_then_rollback_has_nothing_to_undo(big: Built) -> None:
    """The ref had not moved: the half-written checkout is undone; nothing was landed."""
    b = big
    with_user_work(b)
    crashed = uet("land", b.run, cwd=b.path, env={"UET_BRANCH_CRASH": "mid-checkout"})
    assert crashed.returncode == CRASHED
    assert 0 < len(generated(b)) < N_FILES  # a real half was written
    proc = uet("rollback", b.run, cwd=b.path)
    assert proc.returncode == 1
    assert "undid an interrupted landing" in proc.stderr and "landed nothing" in proc.stderr
    assert land_events(b.repo, b.run) == []
    assert head_of(b.path) == b.base
    assert (b.path / "a.txt").read_text() == "alpha\n" and (b.path / "b.txt").exists()
    assert not any(b.path.glob("gen*"))
    user_only_status(b.path)
    fsck_clean(b.path)


def rollback_events(b: Built) -> list[str]:
    return [e.oid for e in query.read_ledger(b.repo, b.run).run_events("run: rollback")
            if e.subject == "run: rollback"]


def assert_rolled_back(b: Built) -> None:
    assert (b.path / "a.txt").read_text() == "alpha\n"
    assert (b.path / "b.txt").read_text() == "beta\n"
    assert not any(b.path.glob("gen*"))
    user_only_status(b.path)
    states = {w.ws: w.state for w in query.run_status(b.repo, b.run).workstreams}
    assert states == {"ws-big": "rolled-back"}
    assert len(rollback_events(b)) == 1
    assert open_intent(b.repo, b.run) is None
    fsck_clean(b.path)
    assert uet("fsck", b.run, cwd=b.path).returncode == 0


@pytest.mark.parametrize("point", ["rollback:intent", "rollback:ref-moved", "rollback:moved"])
def test_rollback_by_reset_killed_then_rollback_again(landed: Built, point: str) -> None:
    b = landed
    crashed = uet("rollback", b.run, cwd=b.path, env={"UET_TEST_CRASH_AT": point})
    assert crashed.returncode == CRASHED, crashed.stderr
    again = uet("rollback", b.run, cwd=b.path)
    assert again.returncode == 0, again.stderr
    assert "interrupted rollback" in again.stdout
    assert refs_at(b.path, "refs/heads/main", "HEAD") == [b.base, b.base]
    assert_rolled_back(b)


@pytest.mark.parametrize(("var", "point"),
                         [*BRANCH_POINTS, ("UET_TEST_CRASH_AT", "rollback:intent"),
                          ("UET_TEST_CRASH_AT", "rollback:moved")])
def test_rollback_by_revert_killed_then_rollback_again(landed: Built, var: str,
                                                       point: str) -> None:
    b = landed
    (b.path / "later.txt").write_text("a later commit of the user\n")
    git(b.path, "add", "later.txt")
    git(b.path, "commit", "-q", "-m", "user commit after the landing")
    user = head_of(b.path)
    crashed = uet("rollback", b.run, cwd=b.path, env={var: point})
    assert crashed.returncode == CRASHED, crashed.stderr
    again = uet("rollback", b.run, cwd=b.path)
    assert again.returncode == 0, again.stderr
    parent, head, main = refs_at(b.path, "main~1", "HEAD", "refs/heads/main")
    assert (parent, head) == (user, main)
    assert (b.path / "later.txt").read_text() == "a later commit of the user\n"
    assert_rolled_back(b)


def test_another_runs_interrupted_landing_is_named(big: Built) -> None:
    b = big
    other = scripted_run(b.path, [("ws-o", "committed", {"o.txt": b"other run\n"})])
    assert other.base == b.base
    crashed = uet("land", b.run, cwd=b.path, env={"UET_BRANCH_CRASH": "mid-checkout"})
    assert crashed.returncode == CRASHED
    proc = uet("land", other.run, cwd=b.path)
    assert proc.returncode == 1
    assert f"run {b.run} was interrupted while moving main: `uet land {b.run}`" in proc.stderr
    assert head_of(b.path) == b.base
    proc = uet("land", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "undid an interrupted landing" in proc.stdout
    assert head_of(b.path) == b.tip
    assert not (b.path / ".git/index.lock").exists()
    fsck_clean(b.path)


def test_land_killed_then_resume_finishes_it(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "proj", {"a.txt": "alpha\n", "c.txt": "gamma\n"})
    (path / "workstreams").mkdir()
    for i in range(3):
        (path / "workstreams" / f"w{i}.yaml").write_text(yaml.safe_dump(
            {"id": f"w{i}", "command": f"printf '{i}\\n' > f{i}.txt"}))
    git(path, "add", "workstreams")
    git(path, "commit", "-q", "-m", "workstreams")
    assert uet("run", "--land", "never", cwd=path).returncode == 0
    run = git(path, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/")
    tip = git(path, "rev-parse", f"refs/uet/integration/{run}")
    (path / "c.txt").write_bytes(MINE)
    crashed = uet("land", run, cwd=path, env={"UET_BRANCH_CRASH": "mid-index-commit"})
    assert crashed.returncode == CRASHED
    proc = uet("resume", run, "--land", "end", cwd=path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert head_of(path) == tip
    assert status_entries(path) == [("1", ".M", "c.txt")]
    assert (path / "c.txt").read_bytes() == MINE
    assert not (path / ".git/index.lock").exists()
    fsck_clean(path)
