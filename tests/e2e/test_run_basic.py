"""`uet run` end to end on real repositories: what lands, in which order, what is quarantined
and why, checked with the git CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import git
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    landed_workstreams,
    last_run,
    ledger_subjects,
    run_ok,
    setup_repo,
    states,
    tool,
    trailers,
)


def test_independent_patches_land_on_main(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "ws-a": {"command": "echo a > a.txt"},
        "ws-b": {"command": "echo b > b.txt"},
        "ws-c": {"command": ["sh", "-c", "echo c > c.txt"]},
    })
    base = git(repo, "rev-parse", "main")
    out = run_ok(repo, "run", "--jobs", "3").stdout
    run_id = last_run(repo)
    assert states(repo) == {"ws-a": "committed", "ws-b": "committed", "ws-c": "committed"}
    assert sorted(landed_workstreams(repo)) == ["ws-a", "ws-b", "ws-c"]
    integration = git(repo, "rev-parse", f"refs/uet/integration/{run_id}")
    assert git(repo, "rev-parse", "main") == integration
    assert git(repo, "rev-list", "--count", f"{base}..main") == "3"
    for f, text in (("a.txt", "a"), ("b.txt", "b"), ("c.txt", "c")):
        assert git(repo, "show", f"main:{f}") == text
    t = trailers(repo, "main")
    assert t["Uet-Run"] == run_id and t["Uet-Tool"] == "shell" and t["Uet-Attempt"] == "1"
    # The user's checkout followed the fast-forward (it was clean) and no worktree is left.
    assert (repo / "a.txt").read_text() == "a\n"
    assert git(repo, "status", "--porcelain") == ""
    kept = git(repo, "worktree", "list").splitlines()[1:]  # [worktree] keep: for the next run
    assert all("/.git/uet/worktrees/" in w and w.endswith("locked") for w in kept), kept
    subjects = ledger_subjects(repo)
    assert subjects[0] == "run: start" and subjects[-1] == "run: finish"
    assert "ws-a: verified -> committed" in subjects
    assert f"git log --oneline refs/uet/ledger/{run_id}" in out
    fsck_clean(repo)


def test_chain_lands_in_order_and_sees_its_dependencies(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo from-a > a.txt"},
        "b": {"depends_on": ["a"], "command": [tool("needs_file.sh"), "a.txt", "b.txt"]},
        "c": {"depends_on": ["b"], "command": [tool("needs_file.sh"), "b.txt", "c.txt"]},
    })
    run_ok(repo, "run", "--jobs", "2")
    assert landed_workstreams(repo) == ["a", "b", "c"]
    assert git(repo, "show", "main:c.txt") == "from-a\nsaw a.txt\nsaw b.txt"
    fsck_clean(repo)


def test_failing_acceptance_quarantines_blocks_dependents_siblings_land(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "bad": {"command": "echo 1 > bad.txt", "acceptance": ["grep -q 2 bad.txt"]},
        "after-bad": {"depends_on": ["bad"], "command": "echo x > x.txt"},
        "after-after": {"depends_on": ["after-bad"], "command": "echo y > y.txt"},
        # Acceptance sees exactly the patch: HEAD is the patch commit and nothing differs.
        "sibling": {"command": "echo s > s.txt", "acceptance": [
            "grep -q s s.txt", 'test "$(git rev-parse HEAD)" = "$UET_PATCH"',
            "git diff --quiet HEAD", 'test -z "$(git status --porcelain)"']},
    })
    proc = run_ok(repo, "run", code=1)
    run_id = last_run(repo)
    assert states(repo) == {"bad": "quarantined", "after-bad": "blocked",
                            "after-after": "blocked", "sibling": "committed"}
    assert landed_workstreams(repo) == ["sibling"]
    q = git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/quarantined/{run_id}/")
    assert q == f"refs/uet/quarantined/{run_id}/bad"
    log = git(repo, "log", "--format=%B", f"refs/uet/ledger/{run_id}")
    assert "Uet-Reason: verify-failed" in log
    assert "Uet-Blocked-By: bad" in log and "dependency-quarantined" in log
    # The acceptance log is evidence in the ledger tree.
    acc = git(repo, "show", f"refs/uet/ledger/{run_id}:evidence/bad/1/acceptance.log")
    assert "grep -q 2 bad.txt" in acc
    assert "quarantined" in proc.stdout and "blocked" in proc.stdout
    fsck_clean(repo)


def test_same_lines_unordered_one_commits_other_conflicts(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", files={"shared.txt": "line one\nline two\n"},
                      workstreams={
                          "left": {"command": "printf 'LEFT\\nline two\\n' > shared.txt"},
                          "right": {"command": "printf 'RIGHT\\nline two\\n' > shared.txt"},
                          "after-left": {"depends_on": ["left"], "command": "echo l > l.txt"},
                          "after-right": {"depends_on": ["right"], "command": "echo r > r.txt"},
                      })
    run_ok(repo, "run", "--jobs", "2", code=1)
    st = states(repo)
    # The loser's dependent is blocked (recorded), the winner's lands.
    loser = next(w for w in ("left", "right") if st[w] == "quarantined")
    winner = "right" if loser == "left" else "left"
    assert st[f"after-{loser}"] == "blocked" and st[f"after-{winner}"] == "committed"
    del st[f"after-{loser}"], st[f"after-{winner}"]
    assert sorted(st.values()) == ["committed", "quarantined"]
    loser = next(w for w, s in st.items() if s == "quarantined")
    winner = next(w for w, s in st.items() if s == "committed")
    log = git(repo, "log", "-1", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: conflict" in full and "shared.txt" in full, log
    assert git(repo, "show", "main:shared.txt").splitlines()[0] == winner.upper()
    assert loser not in landed_workstreams(repo)
    fsck_clean(repo)


def test_scope_violation_lists_the_paths(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", files={"src/in_scope.txt": "1\n", "docs/outside.txt": "1\n"},
                      workstreams={
                          "scoped": {"command": tool("outside.sh"),
                                     "scope": {"allow": ["src/**"]}},
                          "fine": {"command": "echo ok >> src/in_scope.txt",
                                   "scope": {"allow": ["src/**"]}},
                      })
    run_ok(repo, "run", "--jobs", "1", code=1)
    assert states(repo) == {"scoped": "quarantined", "fine": "committed"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: scope-violation" in full
    assert "docs/outside.txt" in full
    # The rejected patch is kept on its ref for inspection.
    run_id = last_run(repo)
    assert "bad" in git(repo, "show", f"refs/uet/patches/{run_id}/scoped/1:docs/outside.txt")
    fsck_clean(repo)


def test_timeout_kills_the_tool_and_its_child(tmp_path: Path):
    pidfile = tmp_path / "child.pid"
    repo = setup_repo(tmp_path / "r", config=NO_SANDBOX, workstreams={
        "slow": {"command": [tool("sleep_child.sh"), str(pidfile), "30"], "timeout": 1},
    })
    # A process of its own: the killed child must be gone with it, not left as a zombie of
    # this test process (a subreaper once uet has run tools in it).
    proc = run_ok(repo, "run", code=1, forked=True)
    assert states(repo) == {"slow": "quarantined"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: tool-timeout" in full
    pid = int(pidfile.read_text())
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] == "Z", \
        f"child {pid} survived the timeout"
    assert "tool-timeout" in proc.stdout
    out = git(repo, "show", f"refs/uet/ledger/{last_run(repo)}:evidence/slow/1/tool.stdout")
    assert "started child" in out


def test_empty_quarantines_unless_allowed(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", workstreams={
        "nothing": {"command": "true"},
        "nothing-ok": {"command": "true", "allow_empty": True},
    })
    run_ok(repo, "run", code=1)
    assert states(repo) == {"nothing": "quarantined", "nothing-ok": "committed"}
    full = git(repo, "log", "--format=%B", f"refs/uet/ledger/{last_run(repo)}")
    assert "Uet-Reason: empty" in full
    fsck_clean(repo)


def test_tool_that_commits_itself(tmp_path: Path):
    repo = setup_repo(tmp_path / "r",
                      workstreams={"selfish": {"command": tool("commit_itself.sh")}})
    base = git(repo, "rev-parse", "main")
    run_ok(repo, "run")
    # One patch commit (the tool's two commits squashed, plus its uncommitted change).
    assert git(repo, "rev-list", "--count", f"{base}..main") == "1"
    files = git(repo, "ls-tree", "--name-only", "main").splitlines()
    assert {"self1.txt", "self2.txt", "self3.txt"} <= set(files)
    assert git(repo, "rev-parse", "main^") == base
    body = git(repo, "log", "-1", "--format=%B", "main")
    assert "tool: add self1" in body and "tool: add self2" in body
    fsck_clean(repo)


def test_tool_that_prints_a_diff(tmp_path: Path):
    repo = setup_repo(
        tmp_path / "r",
        config=f'[tools.differ]\ncommand = "{tool("print_diff.sh")}"\noutput = "diff"\n',
        workstreams={"patchy": {"tool": "differ"}},
    )
    run_ok(repo, "run")
    assert git(repo, "show", "main:README.md") == "hello\nfrom a diff"
    assert git(repo, "show", "main:new.txt") == "created by a diff"
    assert trailers(repo, "main")["Uet-Tool"] == "differ"
    fsck_clean(repo)


def test_tool_that_prints_a_mailbox_patch(tmp_path: Path):
    repo = setup_repo(
        tmp_path / "r",
        config=f'[tools.mailer]\ncommand = ["{tool("print_mbox.sh")}"]\noutput = "mbox"\n',
        workstreams={"mailed": {"tool": "mailer"}},
    )
    run_ok(repo, "run")
    assert git(repo, "show", "main:mailed.txt") == "from a mailbox"
    assert trailers(repo, "main")["Uet-Workstream"] == "mailed"
    fsck_clean(repo)


def test_delete_rename_binary_exec_bit(tmp_path: Path):
    repo = setup_repo(tmp_path / "r", files={
        "delete_me.txt": "bye\n", "old_name.txt": "same content\n", "run_me.sh": "echo hi\n",
    }, workstreams={"ops": {"command": tool("file_ops.sh")}})
    run_ok(repo, "run")
    tree = git(repo, "ls-tree", "main")
    assert "delete_me.txt" not in tree and "old_name.txt" not in tree
    assert git(repo, "show", "main:new_name.txt") == "same content"
    assert "100755 blob" in next(line for line in tree.splitlines() if "run_me.sh" in line)
    blob = subprocess.run(["git", "cat-file", "-p", "main:blob.bin"], cwd=repo,
                          capture_output=True, check=True).stdout
    assert blob == b"\x00\x01\x02\xffbinary\x00"
    assert (repo / "blob.bin").read_bytes() == blob
    fsck_clean(repo)
