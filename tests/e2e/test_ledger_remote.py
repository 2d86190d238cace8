"""The ledger travels with git: push refs/uet/* to a bare remote, clone, fetch, same status;
everything stays readable after `git gc --prune=now`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import git, uet
from tests.hooks.ledgerkit import scripted_run


def test_push_clone_fetch_same_status(repo: Path, tmp_path: Path) -> None:
    scripted_run(repo)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "push", "-q", str(remote), "main", "refs/uet/*:refs/uet/*")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    assert git(clone, "for-each-ref", "refs/uet/") == ""  # a clone does not fetch them...
    git(clone, "fetch", "-q", "origin", "refs/uet/*:refs/uet/*")  # ...until asked
    assert git(clone, "for-each-ref", "refs/uet/") == git(repo, "for-each-ref", "refs/uet/")
    for args in (["status", "--json"], ["status"], ["log", "--json"], ["runs", "--json"],
                 ["show", "b"], ["fsck"]):
        here, there = uet(*args, cwd=repo), uet(*args, cwd=clone)
        assert here.returncode == there.returncode == 0, (args, here.stderr, there.stderr)
        assert here.stdout == there.stdout, args
    data = json.loads(uet("status", "--json", cwd=clone).stdout)
    assert {w["ws"]: w["state"] for w in data["workstreams"]}["b"] == "quarantined"
    proc = uet("show", "b", "--evidence", "acceptance.log", cwd=clone)
    assert proc.stdout == "FAILED test_b\n"


def test_everything_readable_after_gc_prune_now(repo: Path) -> None:
    s, _ = scripted_run(repo)
    before = uet("status", "--json", cwd=repo).stdout
    git(repo, "gc", "--prune=now", "--quiet")
    git(repo, "fsck", "--strict", "--no-dangling")
    assert uet("status", "--json", cwd=repo).stdout == before
    for ws, name, content in (("b", "acceptance.log", "FAILED test_b\n"),
                              ("b", "tool.stdout", "b out\n"), ("d", "tool.stderr", "boom\n"),
                              ("a", "acceptance.log", "1 passed\n")):
        proc = uet("show", ws, "--evidence", name, cwd=repo)
        assert proc.returncode == 0 and proc.stdout == content, (ws, name, proc.stderr)
    for ws, oid in s.patches.items():
        assert git(repo, "cat-file", "-t", oid) == "commit", ws
        assert git(repo, "rev-parse", f"refs/uet/patches/{s.run}/{ws}/1") == oid
    assert uet("fsck", cwd=repo).returncode == 0
