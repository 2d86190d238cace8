"""`uet run`: the user's checkout, dry runs, JSON output, retries, the circuit breaker, hooks,
landing modes and a moved target."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import (
    checkout_fingerprint,
    fsck_clean,
    json_lines,
    landed_workstreams,
    last_run,
    run,
    run_ok,
    sandbox_writable,
    setup_repo,
    shared_dir,
    states,
    tool,
    trailers,
)
from uet_git.workers import sandbox


def test_dirty_user_checkout_untouched_byte_for_byte(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", files={"README.md": "hello\n", "keep.txt": "k\n"},
                      workstreams={"w1": {"command": "echo one > one.txt"},
                                   "w2": {"command": "echo changed > keep.txt"}})
    git(repo, "branch", "feature")
    (repo / "README.md").write_text("user's unstaged edit\n")
    (repo / "staged.txt").write_text("staged\n")
    git(repo, "add", "staged.txt")
    (repo / "untracked.txt").write_text("untracked\n")
    (repo / "keep.txt").write_text("user edit of keep\n")
    before = checkout_fingerprint(repo)
    head = git(repo, "rev-parse", "HEAD")
    run_ok(repo, "run", "--target", "feature", "--jobs", "2")
    assert checkout_fingerprint(repo) == before
    assert git(repo, "rev-parse", "HEAD") == head
    assert sorted(landed_workstreams(repo, "feature")) == ["w1", "w2"]
    assert git(repo, "show", "feature:keep.txt") == "changed"
    fsck_clean(repo)


def test_dry_run_writes_nothing(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"}, "b": {"depends_on": ["a"], "command": "true"}})
    refs_before = git(repo, "for-each-ref")
    proc = run_ok(repo, "run", "--dry-run")
    assert "a" in proc.stdout and "critical path" in proc.stdout
    assert git(repo, "for-each-ref") == refs_before
    assert not (repo / ".git" / "uet").exists()
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    proc = run_ok(repo, "run", env={"PIPELINE_DRY_RUN": "1"})
    assert "nothing is written" in proc.stdout
    assert git(repo, "for-each-ref") == refs_before


def test_json_lines_parse_and_end_with_a_summary(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"}, "b": {"command": "false"},
        "c": {"depends_on": ["b"], "command": "true"}})
    proc = run_ok(repo, "run", "--json", code=1)
    objs = json_lines(proc.stdout)
    assert objs[0]["event"] == "start"
    assert objs[-1]["event"] == "summary"
    assert objs[-1]["exit_code"] == 1 and objs[-1]["run"] == last_run(repo)
    trans = [o for o in objs if o["event"] == "transition"]
    assert {"ws": "a", "from": "verified", "to": "committed"}.items() <= next(
        o for o in trans if o["ws"] == "a" and o["to"] == "committed").items()
    assert any(o["ws"] == "b" and o["reason"] == "tool-failed" for o in trans)
    assert any(o["ws"] == "c" and o["to"] == "blocked"
               and o["reason"] == "dependency-quarantined" for o in trans)


def test_retries_then_success(tmp_path: Path):
    counter = shared_dir(tmp_path) / "count"
    # The breaker counts workstreams, not tries: two failed tries of one workstream do not
    # open a breaker whose threshold is 2.
    config = "[breaker]\nthreshold = 2\n" + sandbox_writable(counter.parent)
    repo = setup_repo(tmp_path / "r", config=config, workstreams={
        "flaky": {"command": [tool("flaky.sh"), str(counter), "2"], "retries": 2}})
    run_ok(repo, "run")
    assert counter.read_text().strip() == "3"
    assert states(repo) == {"flaky": "committed"}
    tries = git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:evidence/flaky/1/tries.txt")
    assert "try 1" in tries and "try 3" in tries


def test_retries_exhausted_is_tool_failed(tmp_path: Path):
    counter = shared_dir(tmp_path) / "count"
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(counter.parent), workstreams={
        "flaky": {"command": [tool("flaky.sh"), str(counter), "5"], "retries": 1}})
    run_ok(repo, "run", code=1)
    assert counter.read_text().strip() == "2"
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: tool-failed" in full


def test_breaker_opens_and_quarantines_the_tools_remaining_work(tmp_path: Path):
    config = '[breaker]\nthreshold = 2\n[tools.broken]\ncommand = "exit 1"\n'
    wss = {f"b{i}": {"tool": "broken"} for i in range(5)}
    wss["other"] = {"command": "echo o > o.txt"}
    wss["after"] = {"depends_on": ["b4"], "command": "echo a > a.txt"}
    repo = setup_repo(tmp_path / "r", config=config, workstreams=wss)
    run_ok(repo, "run", "--jobs", "1", code=1)
    st = states(repo)
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert full.count("Uet-Reason: tool-failed") == 2
    assert full.count("Uet-Reason: breaker-open") == 3
    assert st["other"] == "committed" and st["after"] == "blocked"
    assert all(st[f"b{i}"] == "quarantined" for i in range(5))


def test_pre_merge_hooks_run_on_every_candidate(tmp_path: Path):
    hook = "#!/bin/sh\nif grep -rq forbidden --include=*.txt .; then echo found >&2; exit 1; fi\n"
    repo = setup_repo(tmp_path / "r", files={"README.md": "hi\n",
                                             ".uet/hooks/pre-merge.d/10-no-forbidden": hook},
                      config='[hooks]\npre-merge = ["test -n \\"$UET_CANDIDATE\\""]\n',
                      workstreams={"good": {"command": "echo fine > good.txt"},
                                   "evil": {"command": "echo forbidden > evil.txt"}})
    (repo / ".uet/hooks/pre-merge.d/10-no-forbidden").chmod(0o755)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "hook executable")
    run_ok(repo, "run", "--jobs", "2", code=1)
    assert states(repo) == {"good": "committed", "evil": "quarantined"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: hook-failed" in full and "10-no-forbidden" in full
    assert "pre-merge hooks: 2 passed" in full
    fsck_clean(repo)


def test_acceptance_reruns_on_a_candidate_that_differs(tmp_path: Path):
    # b's acceptance passes on its own patch, but not once a is integrated before it.
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"command": "echo b > b.txt", "acceptance": ["test ! -f a.txt"]},
    })
    run_ok(repo, "run", "--deterministic", "--jobs", "2", code=1)
    assert states(repo) == {"a": "committed", "b": "quarantined"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "acceptance failed on the candidate" in full


def test_deterministic_same_inputs_same_tree(tmp_path: Path):
    trees = []
    for n in range(2):
        repo = setup_repo(tmp_path / f"r{n}", files={"log.txt": "start\n"}, workstreams={
            "a": {"command": "echo a >> log.txt"},
            "b": {"command": "echo b > b.txt"},
            "c": {"depends_on": ["a"], "command": "echo c > c.txt"},
        })
        run_ok(repo, "run", "--deterministic", "--jobs", str(n + 1))
        trees.append(git(repo, "rev-parse", "main^{tree}"))
        assert landed_workstreams(repo) == ["a", "b", "c"]
    assert trees[0] == trees[1]


def test_land_continuous_and_never(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"}, "b": {"command": "echo b > b.txt"}})
    base = git(repo, "rev-parse", "main")
    run_ok(repo, "run", "--land", "never")
    assert git(repo, "rev-parse", "main") == base
    run_id = last_run(repo)
    assert git(repo, "rev-list", "--count", f"main..refs/uet/integration/{run_id}") == "2"
    run_ok(repo, "land", run_id)
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse",
                                                 f"refs/uet/integration/{run_id}")
    repo2 = setup_repo(tmp_path / "r2", workstreams={
        "a": {"command": "echo a > a.txt"}, "b": {"command": "echo b > b.txt"}})
    run_ok(repo2, "run", "--land", "continuous")
    assert sorted(landed_workstreams(repo2)) == ["a", "b"]
    lands = [s for s in git(repo2, "log", "--format=%s",
                            f"refs/uet/ledger/{last_run(repo2)}").splitlines() if s == "run: land"]
    assert len(lands) == 2
    fsck_clean(repo2)


@pytest.mark.skipif(sandbox.available() is not None,
                    reason="unsandboxed, a ref moved while a tool runs is the tool's doing")
def test_target_moved_during_the_run_is_not_forced(tmp_path: Path):
    # Someone else (not the tool: that would be tampering) moves the target while it runs.
    shared = shared_dir(tmp_path)
    started, go = shared / "started", shared / "go"
    waits = (f"touch {started}; i=0; while [ ! -f {go} ] && [ $i -lt 600 ]; do sleep 0.05; "
             "i=$((i + 1)); done; echo w > w.txt")
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(shared),
                      workstreams={"w": {"command": waits}})
    git(repo, "branch", "feature")
    errors: list[BaseException] = []

    def someone_else_moves_feature() -> None:
        try:
            deadline = time.monotonic() + 60
            while not started.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            moved = git(repo, "commit-tree", "-p", "feature", "-m", "someone else",
                        "feature^{tree}")
            git(repo, "update-ref", "refs/heads/feature", moved)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            go.touch()

    mover = threading.Thread(target=someone_else_moves_feature)
    mover.start()
    try:
        proc = run_ok(repo, "run", "--target", "feature", code=1)
    finally:
        mover.join()
    assert not errors, errors
    run_id = last_run(repo)
    assert states(repo) == {"w": "committed"}
    feature = git(repo, "rev-parse", "feature")
    assert git(repo, "log", "-1", "--format=%s", "feature") == "someone else"
    assert feature != git(repo, "rev-parse", f"refs/uet/integration/{run_id}")
    assert f"uet land {run_id}" in proc.stdout and "--rebase" in proc.stdout
    # Re-integrate onto the moved target, re-verifying, then land.
    run_ok(repo, "land", run_id, "--rebase")
    assert git(repo, "log", "-1", "--format=%s", "feature^") == "someone else"
    assert landed_workstreams(repo, "feature") == ["w"]
    assert git(repo, "show", "feature:w.txt") == "w"
    assert git(repo, "rev-parse", "feature") == git(repo, "rev-parse",
                                                    f"refs/uet/integration/{run_id}")
    assert "run: rebase" in git(repo, "log", "--format=%s", f"refs/uet/ledger/{run_id}")
    # fsck checks the integration chain from the rebase's onto-point, not the run's base.
    fsck_clean(repo)


def test_invalid_inputs_exit_2_with_one_line(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"depends_on": ["b"], "command": "true"}, "b": {"depends_on": ["a"],
                                                             "command": "true"}})
    proc = run(repo, "run")
    assert proc.returncode == 2 and "a -> b -> a" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    repo2 = setup_repo(tmp_path / "r2", workstreams={"a": {"tool": "nope"}})
    proc = run(repo2, "run")
    assert proc.returncode == 2 and "nope" in proc.stderr
    repo3 = setup_repo(tmp_path / "r3", workstreams={"a": {"command": "true"}})
    proc = run(repo3, "run", "--target", "no-such-branch")
    assert proc.returncode == 2 and "no-such-branch" in proc.stderr
    git(repo3, "checkout", "-q", "--detach")
    proc = run(repo3, "run")
    assert proc.returncode == 2 and "detached" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    (empty / "workstreams").mkdir()
    (empty / "workstreams" / "a.yaml").write_text("id: a\ncommand: 'true'\n")
    proc = run(empty, "run")
    assert proc.returncode == 2 and "no commits" in proc.stderr


def test_only_takes_dependencies_and_paths_select_files(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"depends_on": ["a"], "command": "echo b > b.txt"},
        "c": {"command": "echo c > c.txt"},
    })
    run_ok(repo, "run", "--only", "b")
    assert states(repo) == {"a": "committed", "b": "committed"}
    proc = run(repo, "run", "--only", "zzz")
    assert proc.returncode == 2 and "zzz" in proc.stderr
    run_ok(repo, "run", "workstreams/c.yaml")
    assert states(repo) == {"c": "committed"}
    assert sorted(landed_workstreams(repo)) == ["a", "b", "c"]


def test_unreadable_diff_output_is_tool_failed(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", config='[tools.junk]\ncommand = "echo not a diff"\n'
                                             'output = "diff"\n',
                      workstreams={"j": {"tool": "junk"}, "ok": {"command": "echo k > k.txt"}})
    run_ok(repo, "run", code=1)
    assert states(repo) == {"j": "quarantined", "ok": "committed"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: tool-failed" in full and "cannot take the tool's output" in full


def test_missing_executable_is_tool_failed_and_the_rest_runs(tmp_path: Path):
    repo = setup_repo(tmp_path / "r",
                      config='[tools.gone]\ncommand = ["uet-test-no-such-tool", "{prompt_file}"]\n',
                      workstreams={"g": {"tool": "gone", "prompt": "p"},
                                   "ok": {"command": "echo k > k.txt"}})
    proc = run_ok(repo, "run", code=1)
    assert "uet-test-no-such-tool" in proc.stdout  # warned before it ran
    assert states(repo) == {"g": "quarantined", "ok": "committed"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: tool-failed" in full and "executable not found" in full


def test_weights_come_from_estimates_then_earlier_runs(tmp_path: Path):
    fast = shared_dir(tmp_path) / "fast"
    repo = setup_repo(tmp_path / "r", config=sandbox_writable(fast.parent), workstreams={
        "timed": {"command": f"[ -f {fast} ] || sleep 0.4; echo $UET_RUN > t.txt"},
        "estimated": {"command": "echo $UET_RUN > e.txt", "estimate": 7},
    })
    run_ok(repo, "run")
    first_run = last_run(repo)
    first = json.loads(git(repo, "show", f"refs/uet/ledger/{first_run}:plan.json"))
    assert {n["id"]: n["weight"] for n in first["nodes"]} == {"timed": 1.0, "estimated": 7.0}
    fast.touch()
    run_ok(repo, "run")
    second = json.loads(git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:plan.json"))
    weights = {n["id"]: n["weight"] for n in second["nodes"]}
    assert weights["estimated"] == 7.0
    # The first run's measured duration: the worker's time its `queued` transition recorded.
    log = git(repo, "log", "--format=%H %s", f"refs/uet/ledger/{first_run}").splitlines()
    queued = next(line.split()[0] for line in log if line.endswith(" timed: validated -> queued"))
    measured = float(trailers(repo, queued)["Uet-Worker-Seconds"])
    assert measured >= 0.4
    assert weights["timed"] == measured
