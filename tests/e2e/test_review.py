"""Review and steer before landing, as a user runs it (`uet diff`, `uet show`, conflict
evidence, `uet check` after every way the ledger lands, partial landing, `--dry-run`,
`uet retry` of an edited workstream), checked with the git CLI."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess as sp
from pathlib import Path

import pytest
import yaml

from tests.conftest import git, module_git_env
from tests.e2e.helpers import last_run, run, run_ok, setup_repo, states
from tests.e2e.started import read_terminal, start_uet


def three_ws(path: Path, **kw: object) -> Path:
    """a and c independent, b depends on a; each adds one file."""
    return setup_repo(path, workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"depends_on": ["a"], "command": "echo b > b.txt"},
        "c": {"command": "echo c > c.txt"},
    }, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ran_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``three_ws`` after ``uet run --land never`` (all three committed, main at the base):
    run once for the module, copied for each test that starts there (``ran``)."""
    root = tmp_path_factory.mktemp("review-template")
    with module_git_env(root):
        repo = three_ws(root / "r")
        run_ok(repo, "run", "--land", "never")
        return repo, git(repo, "rev-parse", "main"), last_run(repo)


@pytest.fixture
def ran(tmp_path: Path, ran_template: tuple[Path, str, str]) -> tuple[Path, str, str]:
    """(repository, base, run id): a copy of the module's run. The slots the run kept are
    linked worktrees under .git/uet/worktrees whose links name the template's paths: each
    slot's .git file is pointed at the copy's admin directory of the same name, then `git
    worktree repair` points that directory back at the slot, as after a move (repair alone
    would follow the old .git file and re-point the template's admin directory)."""
    template, base, rid = ran_template
    repo = tmp_path / "r"
    shutil.copytree(template, repo, symlinks=True)
    slots = []
    for slot in sorted((repo / ".git" / "uet" / "worktrees").glob("*")):
        link = slot / ".git"
        if link.is_file():
            admin = Path(link.read_text().removeprefix("gitdir: ").strip()).name
            link.write_text(f"gitdir: {repo / '.git' / 'worktrees' / admin}\n")
            slots.append(str(slot))
    if slots:
        git(repo, "worktree", "repair", *slots)
    assert str(template) not in git(repo, "worktree", "list", "--porcelain")
    return repo, base, rid


def refs(repo: Path) -> str:
    return git(repo, "for-each-ref", "--format=%(objectname) %(refname)")


def check_ok(repo: Path, rng: str) -> None:
    proc = run(repo, "check", rng)
    assert proc.returncode == 0, proc.stderr
    assert "all committed by the ledger" in proc.stdout


def test_diff_and_show(ran: tuple[Path, str, str]) -> None:
    repo, _, rid = ran
    cand = git(repo, "rev-parse", f"refs/uet/committed/{rid}/a")
    out = run_ok(repo, "diff", "a").stdout
    assert out == git(repo, "show", "--patch-with-stat", cand) + "\n"
    assert "+a" in out and "a.txt" in out
    assert run_ok(repo, "diff", "a", rid).stdout == out
    assert run_ok(repo, "diff", "a", "--run", rid).stdout == out
    stat = run_ok(repo, "diff", "a", rid, "--stat").stdout
    assert "a.txt | 1 +" in stat and "+a" not in stat
    both = run(repo, "diff", "a", rid, "--run", "nope")
    assert both.returncode != 0 and "two runs given" in both.stderr
    shown = run_ok(repo, "show", "a", rid).stdout
    assert "a.txt | 1 +" in shown
    assert f"`uet diff a {rid}`" in shown
    lines = [ln.split(None, 1) for ln in shown.splitlines()
             if f"git show refs/uet/ledger/{rid}:evidence/a/1/" in ln]
    assert lines, shown
    for name, command in lines:
        raw = sp.run(command.split(), cwd=repo, capture_output=True, check=True).stdout
        assert raw == run_ok(repo, "show", "a", "--evidence", name).stdout.encode()
    assert run_ok(repo, "show", "a", "--run", rid).stdout == shown


def test_conflict_evidence_holds_the_hunks_with_the_base(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", files={"f.txt": "one\ntwo\nthree\n"}, workstreams={
        "x": {"command": "printf 'one\\nXX\\nthree\\n' > f.txt"},
        "y": {"depends_on": [], "command": "sleep 0.3; printf 'one\\nYY\\nthree\\n' > f.txt"},
    })
    run_ok(repo, "run", code=1)
    rid = last_run(repo)
    st = states(repo, rid)
    loser = next(ws for ws, s in st.items() if s == "quarantined")
    text = git(repo, "show", f"refs/uet/ledger/{rid}:evidence/{loser}/1/conflicts.diff3")
    assert text.startswith("=== f.txt: changed on both sides"), text
    assert "<<<<<<< tip " in text and "||||||| base " in text and ">>>>>>> patch " in text
    ours, _, rest = text.partition("||||||| base ")
    base, _, theirs = rest.partition("=======")
    assert "two" in base
    assert {"XX", "YY"} == {w for w in ("XX", "YY") if w in ours + theirs}
    assert git(repo, "show", f"refs/uet/ledger/{rid}:evidence/{loser}/1/conflicts.txt") \
        == "f.txt"


def test_check_accepts_land_rebase_and_revert_refuses_the_rest(ran: tuple[Path, str, str]
                                                              ) -> None:
    repo, base, rid = ran
    git(repo, "commit", "-q", "--allow-empty", "-m", "someone else")
    run_ok(repo, "land", rid, code=1)
    run_ok(repo, "land", rid, "--rebase")
    check_ok(repo, f"{base}..main")
    # Rollback by revert: the landed commits stay in main's history, their reverts on top.
    git(repo, "commit", "-q", "--allow-empty", "-m", "later work")
    run_ok(repo, "rollback", rid, "--yes")
    assert git(repo, "log", "-1", "--format=%s", "main").startswith("Revert")
    check_ok(repo, f"{base}..main")
    # A forged commit carrying the trailers is refused.
    msg = f"forged\n\nUet-Workstream: a\nUet-Run: {rid}\n"
    git(repo, "commit", "-q", "--allow-empty", "-m", msg)
    proc = run(repo, "check", f"{base}..main")
    assert proc.returncode == 1
    assert "not a patch the ledger recorded for a" in proc.stderr


def test_check_refuses_a_quarantined_patch_merged_by_hand(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": ["false"]},
        "c": {"command": "echo c > c.txt"},
    })
    base = git(repo, "rev-parse", "main")
    run_ok(repo, "run", code=1)
    rid = last_run(repo)
    check_ok(repo, f"{base}..main")
    git(repo, "merge", "-q", "--no-edit", f"refs/uet/patches/{rid}/a/1")
    proc = run(repo, "check", f"{base}..main")
    assert proc.returncode == 1 and "a: quarantined" in proc.stderr


def test_check_accepts_land_after_reset_rollback_refuses_a_re_merge(tmp_path: Path) -> None:
    repo = three_ws(tmp_path / "r")
    base = git(repo, "rev-parse", "main")
    run_ok(repo, "run")
    rid = last_run(repo)
    check_ok(repo, f"{base}..main")
    landed = git(repo, "rev-parse", "main")
    run_ok(repo, "rollback", rid, "--yes")
    assert git(repo, "rev-parse", "main") == base
    git(repo, "merge", "-q", "--ff-only", landed)
    proc = run(repo, "check", f"{base}..main")
    assert proc.returncode == 1 and "rolled back" in proc.stderr
    assert yaml is not None


def test_partial_land_only_then_rest_with_rebase(ran: tuple[Path, str, str]) -> None:
    repo, base, rid = ran
    before = refs(repo)
    proc = run(repo, "land", rid, "--only", "b")
    assert proc.returncode == 1 and "not closed under dependencies: b needs a" in proc.stderr
    proc = run(repo, "land", rid, "--only", "a,nope")
    assert proc.returncode == 1 and "nope is not a committed workstream" in proc.stderr
    dry = run_ok(repo, "land", rid, "--only", "a,b", "--dry-run").stdout
    assert "would re-make a, b onto main" in dry and "would not land: c" in dry
    assert refs(repo) == before
    out = run_ok(repo, "land", rid, "--only", "a,b").stdout
    assert "landed part of run" in out and "not landed: c" in out
    files = git(repo, "ls-tree", "--name-only", "main").split()
    assert "a.txt" in files and "b.txt" in files and "c.txt" not in files
    assert git(repo, "rev-list", "--count", f"{base}..main") == "2"
    partial = git(repo, "log", "--format=%(trailers:key=Uet-Partial,valueonly)",
                  f"refs/uet/ledger/{rid}").split()
    assert partial == ["a,b"]
    check_ok(repo, f"{base}..main")
    assert states(repo, rid) == {"a": "committed", "b": "committed", "c": "committed"}
    # The rest was re-integrated on top of what landed: a plain `uet land` lands it.
    assert "the rest (c) re-integrated on top" in out
    assert git(repo, "merge-base", "--is-ancestor", "main", f"refs/uet/integration/{rid}",
               check=False) == ""
    out = run_ok(repo, "land", rid).stdout
    assert "c.txt" in git(repo, "ls-tree", "--name-only", "main").split()
    assert git(repo, "rev-list", "--count", f"{base}..main") == "3"
    check_ok(repo, f"{base}..main")
    run_ok(repo, "fsck", rid)


def test_partial_land_exclude(ran: tuple[Path, str, str]) -> None:
    repo, _, rid = ran
    run_ok(repo, "land", rid, "--exclude", "a")  # b needs a: only c lands
    files = git(repo, "ls-tree", "--name-only", "main").split()
    assert "c.txt" in files and "a.txt" not in files and "b.txt" not in files


def test_dry_runs_write_nothing(ran: tuple[Path, str, str]) -> None:
    repo, _, rid = ran
    before = refs(repo)
    main = git(repo, "rev-parse", "main")
    tip = git(repo, "rev-parse", f"refs/uet/integration/{rid}")
    out = run_ok(repo, "land", rid, "--dry-run").stdout
    assert f"would move refs/heads/main: {main[:12]} -> {tip[:12]} (3 commits" in out
    assert refs(repo) == before
    out = run_ok(repo, "drop", "c", rid, "--dry-run").stdout
    assert "would move refs/uet/integration/" in out and "nothing written" in out
    assert refs(repo) == before
    run_ok(repo, "land", rid)
    before = refs(repo)
    out = run_ok(repo, "rollback", rid, "--dry-run").stdout
    assert f"would reset: refs/heads/main: {tip[:12]} -> {main[:12]}" in out
    assert f"would move refs/uet/committed/{rid}/a -> refs/uet/rolled-back/{rid}/a" in out
    assert refs(repo) == before
    # Not a terminal: no question, it proceeds as before.
    out = run_ok(repo, "rollback", rid).stdout
    assert "rolled back run" in out
    assert git(repo, "rev-parse", "main") == main


def test_rollback_asks_on_a_terminal(tmp_path: Path) -> None:
    repo = three_ws(tmp_path / "r")
    run_ok(repo, "run")
    rid = last_run(repo)
    landed = git(repo, "rev-parse", "main")
    master, slave = pty.openpty()
    try:
        with start_uet(repo, "rollback", rid, terminal=slave) as proc:
            os.close(slave)
            slave = -1
            screen = read_terminal(master, proc, question=b"roll back run",
                                   answer=b"n\n").decode(errors="replace")
            code = proc.wait(timeout=60)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert code == 1, screen
    assert "would reset: refs/heads/main" in screen
    assert "declined" in screen
    assert git(repo, "rev-parse", "main") == landed
    run_ok(repo, "rollback", rid, "--yes")
    assert git(repo, "rev-parse", "main") != landed


def test_drop_committed_not_landed(ran: tuple[Path, str, str]) -> None:
    repo, base, rid = ran
    proc = run(repo, "drop", "a", rid)
    assert proc.returncode == 1 and "committed workstreams depend on it: b" in proc.stderr
    out = run_ok(repo, "drop", "b", rid).stdout
    assert "dropped b in run" in out
    assert states(repo, rid)["b"] == "rolled-back"
    tip = git(repo, "rev-parse", f"refs/uet/integration/{rid}")
    assert "b.txt" not in git(repo, "ls-tree", "--name-only", tip).split()
    run_ok(repo, "land", rid)
    files = git(repo, "ls-tree", "--name-only", "main").split()
    assert "a.txt" in files and "c.txt" in files and "b.txt" not in files
    check_ok(repo, f"{base}..main")
    proc = run(repo, "drop", "a", rid)
    assert proc.returncode == 1 and "has landed" in proc.stderr
    run_ok(repo, "fsck", rid)


def test_retry_rereads_an_edited_workstream(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt", "acceptance": ["test -f missing.txt"]},
    })
    run_ok(repo, "run", code=1)
    rid = last_run(repo)
    spec = repo / "workstreams" / "a.yaml"
    data = yaml.safe_load(spec.read_text())
    data["acceptance"] = ["test -f a.txt"]
    spec.write_text(yaml.safe_dump(data))
    # --frozen keeps the recorded definition: the old acceptance fails again.
    out = run_ok(repo, "retry", "a", rid, "--frozen", code=1)
    assert "changed since" not in out.stdout + out.stderr
    assert states(repo, rid) == {"a": "quarantined"}
    out = run_ok(repo, "retry", "a", rid)
    said = out.stdout + out.stderr
    assert "workstreams/a.yaml changed since run" in said
    assert 'acceptance: ["test -f missing.txt"] -> ["test -f a.txt"]' in said
    assert states(repo, rid) == {"a": "committed"}
    subjects = git(repo, "log", "--format=%s", f"refs/uet/ledger/{rid}").splitlines()
    assert "run: respec" in subjects
    recorded = git(repo, "show", f"refs/uet/ledger/{rid}:run/respec/a.json")
    assert '"test -f a.txt"' in recorded
    # Unchanged since: nothing more is recorded on the next retry-free resume.
    assert subjects.count("run: respec") == 1


def test_pre_push_accepts_a_rebased_and_a_partial_landing(tmp_path: Path) -> None:
    repo = three_ws(tmp_path / "r")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    run_ok(repo, "hooks", "install")
    run_ok(repo, "run", "--land", "never")
    rid = last_run(repo)
    git(repo, "commit", "-q", "--allow-empty", "-m", "someone else")
    run_ok(repo, "land", rid, "--only", "c")
    push = sp.run(["git", "push", "-q", "origin", "main"], cwd=repo, capture_output=True,
                  text=True)
    assert push.returncode == 0, push.stderr
    run_ok(repo, "land", rid, "--rebase")
    push = sp.run(["git", "push", "-q", "origin", "main"], cwd=repo, capture_output=True,
                  text=True)
    assert push.returncode == 0, push.stderr
    assert set(git(remote, "ls-tree", "--name-only", "main").split()) >= {"a.txt", "b.txt",
                                                                         "c.txt"}
    # A forged commit with uet trailers is still refused by the hook.
    forged = f"forged\n\nUet-Workstream: c\nUet-Run: {rid}\n"
    git(repo, "commit", "-q", "--allow-empty", "-m", forged)
    push = sp.run(["git", "push", "origin", "main"], cwd=repo, capture_output=True, text=True)
    assert push.returncode != 0 and "not a patch the ledger recorded for c" in push.stderr
