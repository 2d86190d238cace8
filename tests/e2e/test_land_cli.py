"""`uet land`, `uet rollback`, `uet drop`, `uet retry` as a user runs them (the CLI's own
``main()``), on ledgers scripted with the real writer; checked with the git CLI."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.commands.landkit import fsck_clean, head_of, snapshot_files, two_committed
from tests.conftest import git, make_repo, uet
from tests.e2e.helpers import sandbox_writable, shared_dir
from tests.engine.test_actions import quarantined_chain, state_refs
from uet_git.ledger.writer import Ledger


def one_line_error(proc_stderr: str) -> str:
    lines = proc_stderr.strip().splitlines()
    assert len(lines) == 1, proc_stderr
    assert lines[0].startswith("uet: "), proc_stderr
    assert "Traceback" not in proc_stderr
    return lines[0]


def test_land_and_rollback_commands(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    proc = uet("land", cwd=b.path)  # the latest run by default
    assert proc.returncode == 0, proc.stderr
    assert f"landed run {b.run} on main" in proc.stdout
    assert head_of(b.path) == b.tip
    assert git(b.path, "status", "--porcelain") == ""
    again = uet("land", b.run, cwd=b.path)
    assert again.returncode == 0 and "already" in again.stdout
    proc = uet("rollback", b.run, cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "rolled back run" in proc.stdout
    assert head_of(b.path) == b.base
    out = git(b.path, "for-each-ref", "--format=%(refname)", f"refs/uet/rolled-back/{b.run}/")
    assert out.splitlines() == [f"refs/uet/rolled-back/{b.run}/ws-a",
                                f"refs/uet/rolled-back/{b.run}/ws-b"]
    proc = uet("rollback", cwd=b.path)
    assert proc.returncode == 1
    assert "already rolled back" in one_line_error(proc.stderr)
    fsck_clean(b.path)


def test_land_dirty_checkout_exit_1_files_untouched(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    (b.path / "a.txt").write_bytes(b"uncommitted \x00 bytes\r\n")
    (b.path / "scratch.txt").write_text("untracked\n")
    git(b.path, "add", "scratch.txt")
    before = snapshot_files(b.path)
    index_before = git(b.path, "ls-files", "-s")
    proc = uet("land", b.run, cwd=b.path)
    assert proc.returncode == 1
    line = one_line_error(proc.stderr)
    assert "local changes" in line and f"`uet land {b.run}`" in line
    assert snapshot_files(b.path) == before
    assert git(b.path, "ls-files", "-s") == index_before
    assert head_of(b.path) == b.base
    assert git(b.path, "rev-parse", f"refs/uet/integration/{b.run}") == b.tip
    fsck_clean(b.path)


def test_land_target_moved_exit_1_rebase_advice(tmp_path: Path) -> None:
    b = two_committed(tmp_path)
    git(b.path, "commit", "-q", "--allow-empty", "-m", "someone else")
    moved = head_of(b.path)
    proc = uet("land", cwd=b.path)
    assert proc.returncode == 1
    assert f"`uet land {b.run} --rebase`" in one_line_error(proc.stderr)
    assert head_of(b.path) == moved


def test_commands_refuse_a_live_run(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    with Ledger.open(b.repo, b.run):
        for args in (["land", b.run], ["rollback", b.run], ["drop", "ws-a"],
                     ["retry", "ws-a", "--run", b.run]):
            proc = uet(*args, cwd=b.path)
            assert proc.returncode == 2, (args, proc.stderr)
            assert "another uet process" in one_line_error(proc.stderr)
    assert state_refs(b)["ws-a"] == "quarantined"


def test_drop_command(tmp_path: Path) -> None:
    b = quarantined_chain(tmp_path)
    assert uet("land", b.run, cwd=b.path).returncode == 0
    proc = uet("drop", "ws-x", "--run", b.run, cwd=b.path)
    assert proc.returncode == 1
    assert one_line_error(proc.stderr) == (f"uet: ws-x has landed on main; `uet rollback "
                                           f"{b.run}` undoes a landing")
    proc = uet("drop", "ws-a", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert "ws-b, ws-c, ws-d" in proc.stdout
    assert state_refs(b)["ws-a"] == "dropped"
    fsck_clean(b.path)


def test_no_runs(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "empty")
    for args in (["land"], ["rollback"], ["drop", "ws-a"], ["retry", "ws-a"]):
        proc = uet(*args, cwd=path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "no runs" in one_line_error(proc.stderr)


# --------------------------------------------------------------------------- through `uet run`


def project(tmp_path: Path, workstreams: list[dict[str, object]],
            config: str | None = None) -> Path:
    """A repository with files (and ``config`` as uet.toml) and committed workstream files
    (shell tools)."""
    files = {"a.txt": "alpha\n", "b.txt": "beta\n", "c.txt": "gamma\n"}
    if config is not None:
        files["uet.toml"] = config
    path = make_repo(tmp_path / "proj", files)
    d = path / "workstreams"
    d.mkdir()
    for ws in workstreams:
        (d / f"{ws['id']}.yaml").write_text(yaml.safe_dump(ws))
    git(path, "add", "workstreams")
    git(path, "commit", "-q", "-m", "workstreams")
    return path


def latest(path: Path) -> str:
    return git(path, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/uet/ledger/")


def states_of(path: Path, run: str) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname)", "refs/uet/")
    found: dict[str, str] = {}
    for name in out.splitlines():
        parts = name.split("/")
        if len(parts) == 5 and parts[3] == run and parts[2] != "patches":
            found[parts[4]] = parts[2]
    return found


CHAIN = [
    {"id": "ws-a", "command": "printf 'A\\n' > a.txt"},
    {"id": "ws-b", "depends_on": ["ws-a"], "command": "grep -q A a.txt && printf 'B\\n' > b.txt"},
]


def test_run_dirty_checkout_then_land_then_rollback(tmp_path: Path) -> None:
    path = project(tmp_path, CHAIN)
    base = head_of(path)
    # An edit to a file the landing changes (ws-a writes a.txt): git would not fast-forward.
    (path / "a.txt").write_bytes(b"my uncommitted edit\n")
    before = snapshot_files(path)
    proc = uet("run", "--jobs", "2", cwd=path)
    run = latest(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"uet land {run}" in proc.stdout + proc.stderr
    assert snapshot_files(path) == before
    assert head_of(path) == base
    assert states_of(path, run) == {"ws-a": "committed", "ws-b": "committed"}
    (path / "a.txt").write_text("alpha\n")  # the user puts their edit away
    proc = uet("land", cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert (path / "a.txt").read_text() == "A\n" and (path / "b.txt").read_text() == "B\n"
    assert git(path, "status", "--porcelain") == ""
    landed = git(path, "log", "--format=%(trailers:key=Uet-Workstream,valueonly)", "main")
    assert landed.split() == ["ws-b", "ws-a"]
    proc = uet("rollback", cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert head_of(path) == base
    assert (path / "a.txt").read_text() == "alpha\n"
    assert states_of(path, run) == {"ws-a": "rolled-back", "ws-b": "rolled-back"}
    fsck_clean(path)
    assert uet("fsck", run, cwd=path).returncode == 0


def test_run_target_moved_land_rebase(tmp_path: Path) -> None:
    path = project(tmp_path, CHAIN)
    proc = uet("run", "--land", "never", cwd=path)
    run = latest(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path / "c.txt").write_text("gamma moved on\n")
    git(path, "commit", "-q", "-am", "the target moves on")
    moved = head_of(path)
    proc = uet("land", cwd=path)
    assert proc.returncode == 1
    assert "--rebase" in one_line_error(proc.stderr)
    assert head_of(path) == moved
    proc = uet("land", run, "--rebase", cwd=path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(path, "merge-base", "--is-ancestor", moved, "main")  # raises unless a fast-forward
    assert (path / "a.txt").read_text() == "A\n" and (path / "c.txt").read_text() == \
        "gamma moved on\n"
    assert git(path, "status", "--porcelain") == ""
    proc = uet("rollback", run, cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert head_of(path) == moved
    fsck_clean(path)


def test_retry_new_attempt_runs_blocked_dependents(tmp_path: Path) -> None:
    mark = shared_dir(tmp_path) / "flaky-mark"
    path = project(tmp_path, config=sandbox_writable(mark.parent), workstreams=[
        {"id": "ws-a", "command": f"test -f {mark} || {{ touch {mark}; exit 3; }}; "
                                  "printf 'A\\n' > a.txt"},
        {"id": "ws-b", "depends_on": ["ws-a"], "command": "printf 'B\\n' > b.txt"},
        {"id": "ws-c", "command": "printf 'C\\n' > c.txt"},
    ])
    proc = uet("run", cwd=path)
    run = latest(path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert states_of(path, run) == {"ws-a": "quarantined", "ws-b": "blocked",
                                    "ws-c": "committed"}
    proc = uet("retry", "ws-a", cwd=path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert states_of(path, run) == {"ws-a": "committed", "ws-b": "committed",
                                    "ws-c": "committed"}
    patches = git(path, "for-each-ref", "--format=%(refname)", f"refs/uet/patches/{run}/ws-a/")
    assert patches.splitlines()[-1].endswith("/2")  # a new attempt
    assert (path / "a.txt").read_text() == "A\n" and (path / "b.txt").read_text() == "B\n"
    fsck_clean(path)


def test_drop_after_a_run(tmp_path: Path) -> None:
    path = project(tmp_path, [
        {"id": "ws-a", "command": "exit 4"},
        {"id": "ws-b", "depends_on": ["ws-a"], "command": "printf 'B\\n' > b.txt"},
    ])
    assert uet("run", cwd=path).returncode == 1
    run = latest(path)
    proc = uet("drop", "ws-a", cwd=path)
    assert proc.returncode == 0, proc.stderr
    assert states_of(path, run) == {"ws-a": "dropped", "ws-b": "dropped"}
    fsck_clean(path)


def test_land_rebase_conflict_moves_nothing(tmp_path: Path) -> None:
    path = project(tmp_path, CHAIN)
    assert uet("run", "--land", "never", cwd=path).returncode == 0
    run = latest(path)
    integration = git(path, "rev-parse", f"refs/uet/integration/{run}")
    (path / "a.txt").write_text("the user's own alpha\n")
    git(path, "commit", "-q", "-am", "conflicting change on the target")
    moved = head_of(path)
    proc = uet("land", "--rebase", cwd=path)
    assert proc.returncode == 1
    line = one_line_error(proc.stderr)
    assert "ws-a" in line and "a.txt" in line
    assert head_of(path) == moved
    assert (path / "a.txt").read_text() == "the user's own alpha\n"
    assert git(path, "rev-parse", f"refs/uet/integration/{run}") == integration
    assert states_of(path, run) == {"ws-a": "committed", "ws-b": "committed"}
    fsck_clean(path)
