"""The ledger's read commands as a user runs them (`python -m uet_git ...`), checked with git."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, make_repo, uet
from tests.hooks.ledgerkit import EXPECTED_STATES, scripted_run
from uet_git.ledger.states import STATES


def test_status_table_and_json(repo: Path) -> None:
    s, _ = scripted_run(repo)
    proc = uet("status", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0].startswith(f"run {s.run}  base {s.base[:12]}  target main")
    # the scripted run never finished and no process runs it
    assert out.splitlines()[1] == (f"not running: no process runs it and it did not finish; "
                                   f"`uet resume {s.run}` continues it")
    assert out.splitlines()[2].startswith("WORKSTREAM  STATE")
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[3:-1]}
    assert rows == EXPECTED_STATES
    assert "verify-failed" in out and "tool-failed" in out
    assert out.splitlines()[-1] == "5 workstreams: 2 committed, 2 quarantined, 1 dropped"
    # --json agrees with git for-each-ref, ref by ref
    proc = uet("status", s.run, "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    # every state is a key of counts, zeros included
    assert data["run"] == s.run and {k: n for k, n in data["counts"].items() if n} == {
        "committed": 2, "quarantined": 2, "dropped": 1}
    assert list(data["counts"]) == [*STATES, "pending"]
    listed = git(repo, "for-each-ref", "--format=%(refname) %(objectname)",
                 "refs/uet/committed/", "refs/uet/quarantined/", "refs/uet/dropped/")
    expected = dict(line.split() for line in listed.splitlines())
    got = {w["ref"]: git(repo, "rev-parse", w["ref"]) for w in data["workstreams"]}
    assert got == expected
    # a unique prefix of the run id works too
    assert json.loads(uet("status", s.run[:10], "--json", cwd=repo).stdout) == data


def test_no_runs_is_friendly(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "r")
    for cmd in (["status"], ["runs"]):
        proc = uet(*cmd, cwd=r)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("No runs yet")
    assert json.loads(uet("status", "--json", cwd=r).stdout) is None


def test_unknown_run_and_ws_are_one_line_exit_2(repo: Path) -> None:
    s, _ = scripted_run(repo)
    for args in (["status", "20200101-000000-0000"], ["log", "nope"],
                 ["show", "zz", "--run", s.run], ["show", "b", "--evidence", "nope"],
                 ["log", "--ws", "zz"], ["fsck", "nope"]):
        proc = uet(*args, cwd=repo)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("uet: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_runs(repo: Path) -> None:
    s, _ = scripted_run(repo)
    proc = uet("runs", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.strip().splitlines()
    assert header.split() == ["RUN", "BASE", "TARGET", "STARTED", "COUNTS", "FINISHED", "LANDED"]
    assert row.startswith(f"{s.run}  {s.base[:12]}  main")
    assert "2 committed, 2 quarantined, 1 dropped" in row
    data = json.loads(uet("runs", "--json", cwd=repo).stdout)
    assert [r["run"] for r in data] == [s.run]
    assert data[0]["ledger"] == git(repo, "rev-parse", f"refs/uet/ledger/{s.run}")


def test_log_reads_like_git_log(repo: Path) -> None:
    s, _ = scripted_run(repo)
    proc = uet("log", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    subjects = git(repo, "log", "--reverse", "--format=%h %s", f"refs/uet/ledger/{s.run}")
    assert len(lines) == len(subjects.splitlines())
    for line, subj in zip(lines, subjects.splitlines(), strict=True):
        short, subject = subj.split(" ", 1)
        assert line.split()[2].startswith(short[:7]) and subject in line
    proc = uet("log", s.run, "--ws", "b", "--json", cwd=repo)
    events = json.loads(proc.stdout)
    assert [(e["from"], e["to"]) for e in events] == [
        (None, "created"), ("created", "validated"), ("validated", "queued"),
        ("queued", "quarantined")]
    assert events[-1]["reason"] == "verify-failed"
    assert events[-1]["trailers"]["Uet-Patch"] == s.patches["b"]


def test_show_record_history_evidence(repo: Path) -> None:
    s, _ = scripted_run(repo)
    proc = uet("show", "b", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "state:      quarantined" in out and "reason:     verify-failed" in out
    assert f"patch:      {s.patches['b']}" in out
    assert "b: queued -> quarantined" in out and "acceptance failed" in out
    evidence = out[out.index("evidence (attempt 1):"):].splitlines()[1:3]
    assert [line.split()[0] for line in evidence] == ["acceptance.log", "tool.stdout"]
    assert evidence[0].split(None, 1)[1] == (f"git show refs/uet/ledger/{s.run}:evidence/b/1/"
                                             "acceptance.log")
    proc = uet("show", "b", "--run", s.run, "--evidence", "acceptance.log", cwd=repo)
    assert proc.returncode == 0 and proc.stdout == "FAILED test_b\n"
    proc = uet("show", "a", "--evidence", "tool.stdout", "--attempt", "1", cwd=repo)
    assert proc.stdout == "a tool ran\n"


def test_show_points_to_the_run_that_has_the_workstream(repo: Path) -> None:
    s, _ = scripted_run(repo)
    from uet_git.gitrepo import Repo
    from uet_git.ledger.writer import Ledger

    r = Repo.open(repo)
    with Ledger.create(r, base=s.base, target="main", plan={},
                       run_id="29991231-235959-ffff"):
        pass
    proc = uet("show", "b", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr == (f"uet: no workstream 'b' in run 29991231-235959-ffff; it is in run "
                           f"{s.run}: use --run {s.run}\n")
