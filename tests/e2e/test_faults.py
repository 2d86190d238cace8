"""Deterministic crash points (issue 10, "Proof"): the real ``uet`` in a process of its own (a
child forked from the test process, ``conftest.uet_forked``: the same ``main()``, without a new
interpreter importing uet again for each of the ~100 crashes) is made to die (``os._exit``, as
a ``kill -9`` would leave things) at every ledger transition of a
small run, inside every ledger transaction, at every step of a journaled landing and rollback and
at every step of a resume; then the recovery command runs and the result is checked with the git
CLI: ``git fsck --strict``, ``uet fsck`` clean, each change on the target exactly once (commits
counted by their Uet-Workstream trailer), the user's uncommitted files byte for byte, no
``index.lock`` or worktree left.

The crash points (environment variables read by uet):
- ``UET_TEST_CRASH_AT=P[,P...]`` (engine/context.py): ``WS:STATE`` right after a transition
  was recorded, ``WS:tool-done``, ``land`` (before the run lands), and the journal's
  ``land:intent``/``land:moved``/``rollback:intent``/``rollback:moved``/``rollback:ref-moved``
  (commands/journal.py). With a list, the first one reached ends the process: a chain of
  ``uet run`` then ``uet resume``s, each given the points not hit yet, hits every point once
  whatever order the threads reach them in.
- ``UET_LEDGER_CRASH=POINT[:WS]`` (ledger/writer.py): ``after-objects``, ``after-prepare``,
  ``after-commit`` of a ledger transaction (``:run:rebase`` for ``land --rebase``).
- ``UET_BRANCH_CRASH=POINT`` (gitrepo/branch.py ``CRASH_POINTS``): inside the fast-forward of
  the user's checkout.

The run (three workstreams: ``a``, ``b`` after it, ``bad`` failing its acceptance) is made once
per test process and copied for each case. ``bench/soak.py`` does the same with real SIGKILLs
at random moments; its smoke test is at the end."""

from __future__ import annotations

import os
import shutil
import subprocess as sp
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench import soak
from tests.conftest import Forked, fsck_quick, git, make_repo, uet, uet_forked
from tests.e2e.helpers import landed_workstreams, ledger_subjects

try:
    from uet_git.gitrepo.branch import CRASH_POINTS as BRANCH_POINTS
except ImportError:  # the code before the journaled landing had none
    BRANCH_POINTS = ("after-index-lock", "mid-checkout", "before-ref", "after-ref",
                     "mid-index-commit")

CRASH_CODES = (99, 137)
SPECS = {
    "a": "id: a\ncommand: echo a > a.txt\nacceptance: ['test -f a.txt']\n",
    "b": "id: b\ndepends_on: [a]\ncommand: cat a.txt > b.txt; echo b >> b.txt\n",
    "bad": "id: bad\ncommand: echo x > x.txt\nacceptance: ['false']\n",
}
EXPECTED = {"a": "committed", "b": "committed", "bad": "quarantined"}
LANDS = ["a", "b"]
NOTES = b"the user's uncommitted edit \x00\xff\r\n"
MINE = b"untracked, the user's\n"
# Every transition a run of SPECS records, and the points of its landing.
TRANSITIONS = ([f"{ws}:{s}" for ws in ("a", "b")
                for s in ("created", "validated", "queued", "applied", "verified", "committed")]
               + ["bad:created", "bad:validated", "bad:quarantined"])
RUN_POINTS = [*TRANSITIONS, "land", "land:intent", "land:moved"]
TOOL_POINTS = [f"{ws}:tool-done" for ws in SPECS]
LEDGER_POINTS = ("after-objects", "after-prepare", "after-commit")
RECOVERIES = ("land", "resume", "rollback")


def crash(repo: Path, *args: str, **points: str) -> sp.CompletedProcess[str]:
    """``uet ARGS`` in a process of its own with the crash points set."""
    return uet_forked(*args, cwd=repo, env={"UET_RETRY_BACKOFF": "0.05", **points},
                      timeout=120)


def new_repo(path: Path) -> Path:
    repo = make_repo(path, {"README.md": "hello\n", "notes.txt": "notes\n",
                            **{f"workstreams/{ws}.yaml": text for ws, text in SPECS.items()}})
    user_work(repo)
    return repo


def user_work(repo: Path) -> None:
    (repo / "notes.txt").write_bytes(NOTES)
    (repo / "mine.txt").write_bytes(MINE)


def check_user_work(repo: Path) -> None:
    assert (repo / "notes.txt").read_bytes() == NOTES
    assert (repo / "mine.txt").read_bytes() == MINE
    # One `git status` answers what `diff --cached --name-only` (nothing staged), `diff
    # --name-only` (only notes.txt changed) and `ls-files --others --exclude-standard` (only
    # mine.txt untracked, ignored files left out) answer, from the same index and checkout;
    # --no-optional-locks: it does not write a refreshed index back as it looks.
    out = git(repo, "--no-optional-locks", "status", "--porcelain=v2", "--untracked-files=all")
    entries = [f"{f[1]} {f[8]}" if f[0] == "1" else line
               for line in out.splitlines() if (f := line.split(" ", 8))]
    assert entries == [".M notes.txt", "? mine.txt"], out


def git_fsck(repo: Path) -> None:
    proc = sp.run(["git", *fsck_quick(repo), "fsck", "--strict", "--no-progress"], cwd=repo,
                  capture_output=True, text=True)
    assert proc.returncode == 0 and "error" not in proc.stderr.lower(), proc.stdout + proc.stderr


def check_invariants(repo: Path, run_id: str, *, landed: list[str], at: str | None = None
                     ) -> None:
    """What must hold after any crash once the recovery finished; ``main`` and the checkout's
    HEAD at ``at`` (default: the run's integration tip)."""
    git_fsck(repo)
    u = uet("fsck", cwd=repo)
    assert u.returncode == 0, f"uet fsck: {u.stdout}{u.stderr}"
    on_main = landed_workstreams(repo)
    assert sorted(on_main) == sorted(landed), on_main
    assert len(on_main) == len(set(on_main)), f"landed twice: {on_main}"
    # One rev-parse for the three names: one line each, in order.
    names = ["main", "HEAD"] + ([] if at else [f"refs/uet/integration/{run_id}"])
    oids = git(repo, "rev-parse", *names).splitlines()
    want = at or oids[2]
    assert oids[:2] == [want, want], dict(zip(names, oids, strict=True))
    check_user_work(repo)
    assert not (repo / ".git" / "index.lock").exists()
    assert not list((repo / ".git").glob("uet-ff-index*"))
    kept = git(repo, "worktree", "list").splitlines()[1:]  # [worktree] keep: for the next run
    assert all("/.git/uet/worktrees/" in w and w.endswith("locked") for w in kept), kept


def state_of(repo: Path, run_id: str) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/")
    found: dict[str, str] = {}
    for ref in out.splitlines():
        parts = ref.split("/")
        if len(parts) == 5 and parts[3] == run_id and parts[2] != "patches":
            found[parts[4]] = parts[2]
    return found


def only_run(repo: Path) -> str:
    refs = git(repo, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/")
    runs = refs.split()
    assert len(runs) == 1, runs
    return runs[0]


def integration(repo: Path, run_id: str) -> str:
    return git(repo, "rev-parse", f"refs/uet/integration/{run_id}")


# --- every transition of a run, and every resume step ----------------------------------------

def hit_points(repo: Path, run_id: str, remaining: list[str]) -> list[str]:
    """Which of ``remaining`` a crashed process reached: the transitions it recorded, else
    the landing point the ledger and the target show."""
    subjects = ledger_subjects(repo, run_id)
    recorded = {f"{s.split(':')[0]}:{s.rsplit('-> ', 1)[1]}" for s in subjects if "->" in s}
    new = [p for p in remaining if p in recorded]
    if new:
        return new
    moves = [s for s in subjects if s.startswith("run: land")]
    if moves and moves[-1] == "run: land-intent":
        main, tip = git(repo, "rev-parse", "main", f"refs/uet/integration/{run_id}").split()
        moved = main == tip
        return ["land:moved" if moved else "land:intent"]
    assert not any(p in TRANSITIONS for p in remaining), (remaining, subjects[-3:])
    return ["land"]


def test_every_transition_of_the_run_is_a_crash_point(tmp_path: Path) -> None:
    """RUN_POINTS is every transition a clean run of this repository records (so a state
    added later without a crash test fails here)."""
    repo = new_repo(tmp_path / "r")
    proc = uet("run", "--jobs", "2", cwd=repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = only_run(repo)
    seen = {f"{s.split(':')[0]}:{s.rsplit('-> ', 1)[1]}" for s in ledger_subjects(repo, run_id)
            if "->" in s}
    assert seen == set(TRANSITIONS)
    assert {"run: land-intent", "run: land"} <= set(ledger_subjects(repo, run_id))
    check_invariants(repo, run_id, landed=LANDS)


# RUN_POINTS in three chains (run in parallel); together they are all of them.
CHAINS = {"a": [p for p in RUN_POINTS if p.startswith("a:")],
          "b": [p for p in RUN_POINTS if p.startswith("b:")],
          "bad+land": [p for p in RUN_POINTS if p.startswith(("bad:", "land"))]}


def test_the_chains_cover_every_run_point() -> None:
    assert sorted(p for c in CHAINS.values() for p in c) == sorted(RUN_POINTS)


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_crash_at_every_run_point_then_resume(tmp_path: Path, chain: str) -> None:
    """``uet run`` dies at the chain's first point it reaches, each ``uet resume`` at the
    next one not hit yet, until every point was hit once; then a last resume finishes."""
    repo = new_repo(tmp_path / "r")
    remaining = list(CHAINS[chain])
    hit: list[str] = []
    args: tuple[str, ...] = ("run", "--jobs", "2")
    run_id = ""
    for _ in range(len(remaining) + 2):
        if not remaining:
            break
        proc = crash(repo, *args, UET_TEST_CRASH_AT=",".join(remaining))
        if proc.returncode not in CRASH_CODES:
            break
        run_id = run_id or only_run(repo)
        for point in hit_points(repo, run_id, remaining):
            remaining.remove(point)
            hit.append(point)
        git_fsck(repo)
        check_user_work(repo)
        args = ("resume", run_id)
    assert not remaining, (f"never reached: {remaining} (hit in order: {hit}); last: exit "
                           f"{proc.returncode}\n{proc.stdout}{proc.stderr}")
    done = uet("resume", run_id, cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert state_of(repo, run_id) == EXPECTED
    assert ledger_subjects(repo, run_id)[-1] in ("run: finish", "run: land")
    check_invariants(repo, run_id, landed=LANDS)
    # Each transition recorded once.
    subjects = [s for s in ledger_subjects(repo, run_id) if "->" in s]
    assert len(subjects) == len(set(subjects)), subjects


@pytest.mark.parametrize("point", TOOL_POINTS)
def test_crash_after_a_tool_then_resume(tmp_path: Path, point: str) -> None:
    """The tool ran, nothing about it recorded: resume runs it again."""
    repo = new_repo(tmp_path / "r")
    proc = crash(repo, "run", "--jobs", "2", UET_TEST_CRASH_AT=point)
    assert proc.returncode in CRASH_CODES, proc.stdout + proc.stderr
    run_id = only_run(repo)
    git_fsck(repo)
    done = uet("resume", run_id, cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert state_of(repo, run_id) == EXPECTED
    check_invariants(repo, run_id, landed=LANDS)


@pytest.mark.parametrize("ws", sorted(SPECS))
def test_crash_inside_each_kind_of_ledger_transaction_then_resume(tmp_path: Path,
                                                                  ws: str) -> None:
    """The run dies inside ``ws``'s first ledger transaction with its objects written, each
    resume inside the next one (prepared, then committed), and a last resume finishes."""
    repo = new_repo(tmp_path / "r")
    args: tuple[str, ...] = ("run", "--jobs", "2")
    run_id = ""
    for point in LEDGER_POINTS:
        proc = crash(repo, *args, UET_LEDGER_CRASH=f"{point}:{ws}")
        assert proc.returncode in CRASH_CODES, (point, proc.stdout + proc.stderr)
        run_id = run_id or only_run(repo)
        git_fsck(repo)
        check_user_work(repo)
        args = ("resume", run_id)
    done = uet("resume", run_id, cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    assert state_of(repo, run_id) == EXPECTED
    check_invariants(repo, run_id, landed=LANDS)


# --- every step of a landing and of a rollback -------------------------------------------------

@dataclass(frozen=True)
class Template:
    path: Path
    run: str
    base: str
    tip: str


@pytest.fixture(scope="module")
def unlanded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    """A finished run, not landed (``--land never``), made once per test process."""
    repo = new_repo(tmp_path_factory.mktemp("template") / "r")
    base = git(repo, "rev-parse", "main")
    # Set up before this module's first test's own fixtures: no test HOME yet.
    proc = uet("run", "--land", "never", "--jobs", "2", cwd=repo,
               env={"HOME": str(repo.parent), "UET_RETRY_BACKOFF": "0.05"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    run_id = only_run(repo)
    yield Template(repo, run_id, base, integration(repo, run_id))


def copy_of(t: Template, dest: Path) -> Path:
    shutil.copytree(t.path, dest, symlinks=True)
    return dest


LAND_POINTS = ([("UET_BRANCH_CRASH", p) for p in BRANCH_POINTS]
               + [("UET_TEST_CRASH_AT", p) for p in ("land:intent", "land:moved")])
ROLLBACK_POINTS = ([("UET_TEST_CRASH_AT", p)
                    for p in ("rollback:intent", "rollback:ref-moved", "rollback:moved")]
                   + [("UET_LEDGER_CRASH", p) for p in LEDGER_POINTS])
# Every point with every recovery command when asked (``UET_FAULTS_FULL=1``); by default each
# point once, the recovery commands taking turns (each still meets several points).
FULL = os.environ.get("UET_FAULTS_FULL", "") not in ("", "0")


def matrix(points: list[tuple[str, str]], recoveries: tuple[str, ...]
           ) -> list[tuple[str, str, str]]:
    if FULL:
        return [(v, p, r) for v, p in points for r in recoveries]
    return [(v, p, recoveries[i % len(recoveries)]) for i, (v, p) in enumerate(points)]


@pytest.mark.parametrize(("var", "point", "recovery"), matrix(LAND_POINTS, RECOVERIES))
def test_crash_while_landing_then_recover(unlanded: Template, tmp_path: Path, var: str,
                                          point: str, recovery: str) -> None:
    repo = copy_of(unlanded, tmp_path / "r")
    proc = crash(repo, "land", unlanded.run, **{var: point})
    assert proc.returncode in CRASH_CODES, proc.stdout + proc.stderr
    git_fsck(repo)
    rec = uet(recovery, unlanded.run, cwd=repo)
    assert rec.returncode in (0, 1), rec.stdout + rec.stderr
    assert "Traceback" not in rec.stderr
    if recovery == "rollback":
        # Whatever the crash left, the rollback ends with nothing of the run on main.
        assert rec.returncode == 0 or "landed nothing" in rec.stderr, rec.stderr
        check_invariants(repo, unlanded.run, landed=[], at=unlanded.base)
        return
    if recovery == "resume" and git(repo, "rev-parse", "main") == unlanded.base:
        # The crash came before the target moved and resume only undid it: land now.
        land = uet("land", unlanded.run, cwd=repo)
        assert land.returncode == 0, land.stdout + land.stderr
    check_invariants(repo, unlanded.run, landed=LANDS, at=unlanded.tip)
    assert state_of(repo, unlanded.run) == EXPECTED


@pytest.fixture(scope="module")
def landed_template(unlanded: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``unlanded`` landed by ``uet land``, made once per test process."""
    repo = copy_of(unlanded, tmp_path_factory.mktemp("landed") / "r")
    proc = uet("land", unlanded.run, cwd=repo,
               env={"HOME": str(repo.parent), "UET_RETRY_BACKOFF": "0.05"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(repo, "rev-parse", "main") == unlanded.tip
    return repo


@pytest.fixture
def landed(unlanded: Template, landed_template: Path, tmp_path: Path) -> Path:
    return copy_of(Template(landed_template, unlanded.run, unlanded.base, unlanded.tip),
                   tmp_path / "r")


def rollback_matrix() -> list[object]:
    """Every point with `uet rollback` and with `uet resume` as the recovery (the ledger's
    `after-prepare` with resume only with UET_FAULTS_FULL=1), and a rollback killed between
    its rolled-back records (`after-commit`: the target is back, the journal closed) also
    with `uet land`, which finishes it too (then refuses to land a rolled-back run)."""
    out: list[object] = [(v, p, "rollback") for v, p in ROLLBACK_POINTS]
    for v, p in ROLLBACK_POINTS:
        if v != "UET_LEDGER_CRASH" or FULL or p != "after-prepare":
            out.append((v, p, "resume"))
    out.append(("UET_LEDGER_CRASH", "after-commit", "land"))
    return out


@pytest.mark.parametrize(("var", "point", "recovery"), rollback_matrix())
def test_crash_while_rolling_back_then_recover(unlanded: Template, landed: Path, var: str,
                                               point: str, recovery: str) -> None:
    repo = landed
    proc = crash(repo, "rollback", unlanded.run, **{var: point})
    assert proc.returncode in CRASH_CODES, proc.stdout + proc.stderr
    git_fsck(repo)
    rec = uet(recovery, unlanded.run, cwd=repo)
    assert rec.returncode in (0, 1), rec.stdout + rec.stderr
    assert "Traceback" not in rec.stderr
    main = git(repo, "rev-parse", "main")
    if recovery == "resume" and main != unlanded.base:
        # The crash came before the target moved back: resume undid the move; roll back now.
        again = uet("rollback", unlanded.run, cwd=repo)
        assert again.returncode == 0, again.stdout + again.stderr
    check_invariants(repo, unlanded.run, landed=[], at=unlanded.base)
    st = state_of(repo, unlanded.run)
    assert st == {"a": "rolled-back", "b": "rolled-back", "bad": "quarantined"}, st


def test_crash_in_a_revert_rollback_then_rollback(unlanded: Template, landed: Path) -> None:
    """The target moved on after the landing: rollback adds reverts through the journaled
    fast-forward; a crash inside it, then rollback again, reverts each change once."""
    repo = landed
    (repo / "later.txt").write_text("the user's later commit\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-q", "-m", "user commit after the landing")
    for point in ("after-ref", "mid-checkout"):
        proc = crash(repo, "rollback", unlanded.run, UET_BRANCH_CRASH=point)
        if proc.returncode in CRASH_CODES:
            break
    else:
        pytest.fail("the revert rollback reached no branch crash point")
    rec = uet("rollback", unlanded.run, cwd=repo)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    git_fsck(repo)
    reverts = git(repo, "log", "--format=%s", f"{unlanded.tip}..main").splitlines()
    assert sum(s.startswith("Revert") for s in reverts) == len(LANDS), reverts
    assert not (repo / "a.txt").exists() and not (repo / "b.txt").exists()
    assert (repo / "later.txt").exists()
    check_user_work(repo)
    assert uet("fsck", cwd=repo).returncode == 0


@pytest.mark.parametrize("point", LEDGER_POINTS)
def test_crash_in_a_land_rebase_then_land_rebase(unlanded: Template, tmp_path: Path,
                                                 point: str) -> None:
    repo = copy_of(unlanded, tmp_path / "r")
    (repo / "other.txt").write_text("the user's commit\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "user commit meanwhile")
    moved = git(repo, "rev-parse", "main")
    proc = crash(repo, "land", unlanded.run, "--rebase", UET_LEDGER_CRASH=f"{point}:run:rebase")
    assert proc.returncode in CRASH_CODES, proc.stdout + proc.stderr
    git_fsck(repo)
    assert git(repo, "rev-parse", "main") == moved
    again = uet("land", unlanded.run, "--rebase", cwd=repo)
    assert again.returncode == 0, again.stdout + again.stderr
    check_invariants(repo, unlanded.run, landed=LANDS)
    assert git(repo, "rev-parse", "main^^") == moved


# --- the kill -9 soak, smoke-tested -----------------------------------------------------------

def test_soak_smoke(tmp_path: Path) -> None:
    """Two iterations of the soak, each a ``python -m uet_git`` (seed 14: a ``run``, then a
    ``resume`` of a run that died at ``b:queued``) SIGKILLed at a random moment of its first
    0.6 s, then recovered (``uet resume``) and checked. The soak's own driver runs in a child
    forked from this process, its imports done; the uet processes it kills are new
    interpreters, as a user's are."""
    args = ["--kills", "2", "--seed", "14", "--max-delay", "0.6", "--workdir", str(tmp_path)]
    child = Forked(lambda: soak.main(args), env={"UET_RETRY_BACKOFF": "0.05"})
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, out + err
    assert "violations: 0" in out, out
    total = next(line.split()[1:] for line in out.splitlines() if line.startswith("total"))
    tries, killed = int(total[0]), int(total[1])
    # A kill that came after the command had finished proves nothing about recovery; a
    # `run` or `resume` of these workstreams (well over 0.6 s uncut) is always cut.
    assert tries == 2 and killed >= 1, out
