"""Installed git hooks on real merges and pushes; chaining an existing hook; uninstall."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, uet
from tests.hooks.ledgerkit import Scripted, scripted_run
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.hooks.githooks import CHAIN_SUFFIX, install, uninstall


def run_git(cwd: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input)


def advance_main(repo: Path) -> None:
    """A commit on main after the run's base, so merging a patch makes a merge commit (git runs
    pre-merge-commit only then)."""
    (repo / "other.txt").write_text("other\n")
    git(repo, "add", "other.txt")
    git(repo, "commit", "-q", "-m", "other work")


def setup(repo: Path) -> Scripted:
    s, _ = scripted_run(repo)
    advance_main(repo)
    proc = uet("hooks", "install", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "installed" in proc.stdout
    return s


def test_install_writes_executable_hooks_calling_this_python(repo: Path) -> None:
    install(Repo.open(repo))
    for name in ("pre-merge-commit", "pre-push"):
        hook = repo / ".git" / "hooks" / name
        assert os.access(hook, os.X_OK)
        assert sys.executable in hook.read_text()
        assert not (repo / ".git" / "hooks" / (name + CHAIN_SUFFIX)).exists()
    # installing again updates in place, never chains itself
    assert all(line.startswith("updated") for line in install(Repo.open(repo)))
    assert not (repo / ".git" / "hooks" / ("pre-push" + CHAIN_SUFFIX)).exists()
    uninstall(Repo.open(repo))
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    assert not (repo / ".git" / "hooks" / "pre-merge-commit").exists()


def test_merge_of_quarantined_patch_is_refused(repo: Path) -> None:
    """A quarantined patch and a dropped one merged at once (an octopus merge: git exports a
    GITHEAD_<oid> for each merged head): the hook refuses, naming each."""
    s = setup(repo)
    head = git(repo, "rev-parse", "HEAD")
    proc = run_git(repo, "merge", "--no-edit", f"refs/uet/quarantined/{s.run}/b", s.patches["e"])
    assert proc.returncode != 0
    assert "b: quarantined (verify-failed)" in proc.stderr
    assert "e: dropped" in proc.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert not (repo / "b.txt").exists() or git(repo, "status", "--porcelain")
    git(repo, "merge", "--abort")


def test_pre_push(repo: Path, tmp_path: Path) -> None:
    s = setup(repo)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(repo, "remote", "add", "origin", str(remote))
    # Committed work passing the merge hook is test_core_hooks_path_is_honoured's: here the
    # merge is only the setup of the pushes, so it skips the hook (one interpreter less).
    git(repo, "merge", "-q", "--no-edit", "--no-verify", f"refs/uet/integration/{s.run}")
    proc = run_git(repo, "push", "-q", "origin", "main")
    assert proc.returncode == 0, proc.stderr
    # the ledger travels, quarantined refs included: not checked
    proc = run_git(repo, "push", "-q", "origin", "refs/uet/*:refs/uet/*")
    assert proc.returncode == 0, proc.stderr
    # a new branch holding the quarantined patch
    git(repo, "branch", "bad", s.patches["b"])
    proc = run_git(repo, "push", "origin", "bad")
    assert proc.returncode != 0
    assert "b: quarantined (verify-failed)" in proc.stderr
    assert run_git(remote, "rev-parse", "--verify", "-q", "refs/heads/bad").returncode != 0
    # an existing branch that got it merged while bypassing the merge hook
    git(repo, "merge", "-q", "--no-edit", "--no-verify", s.patches["b"])
    proc = run_git(repo, "push", "origin", "main")
    assert proc.returncode != 0 and "b: quarantined" in proc.stderr


def test_existing_hook_is_chained_and_restored(repo: Path) -> None:
    s, _ = scripted_run(repo)
    hooks = repo / ".git" / "hooks"
    original = ("#!/bin/sh\n"
                'cat > "$(dirname "$0")/../chained-stdin"\n'
                'echo chained ran "$@" >&2\n'
                "exit ${CHAINED_EXIT:-0}\n")
    (hooks / "pre-push").write_text(original)
    (hooks / "pre-push").chmod(0o750)
    lines = install(Repo.open(repo))
    assert any("existing hook now runs first" in line for line in lines)
    assert (hooks / ("pre-push" + CHAIN_SUFFIX)).read_text() == original
    hook = hooks / "pre-push"
    zero = "0" * 40
    stdin = f"refs/heads/main {s.base} refs/heads/main {zero}\n"
    proc = subprocess.run([str(hook), "origin", "/nowhere"], cwd=repo, input=stdin,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "chained ran origin /nowhere" in proc.stderr
    assert (repo / ".git" / "chained-stdin").read_text().strip() == stdin.strip()
    # its failure stops the push with its own exit code
    proc = subprocess.run([str(hook), "origin", "/nowhere"], cwd=repo, input=stdin,
                          capture_output=True, text=True, env={**os.environ, "CHAINED_EXIT": "3"})
    assert proc.returncode == 3
    # the uet part still runs after it: a quarantined patch fails
    stdin_bad = f"refs/heads/bad {s.patches['b']} refs/heads/bad {zero}\n"
    proc = subprocess.run([str(hook), "origin", "/nowhere"], cwd=repo, input=stdin_bad,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "quarantined" in proc.stderr
    proc = uet("hooks", "uninstall", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stdout
    assert (hooks / "pre-push").read_text() == original
    assert (hooks / "pre-push").stat().st_mode & 0o777 == 0o750
    assert not (hooks / ("pre-push" + CHAIN_SUFFIX)).exists()
    assert not (hooks / "pre-merge-commit").exists()


def test_cannot_chain_twice_changes_nothing(repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\nexit 0\n")
    (hooks / ("pre-push" + CHAIN_SUFFIX)).write_text("#!/bin/sh\nexit 0\n")
    with pytest.raises(UetError, match="cannot chain"):
        install(Repo.open(repo))
    assert not (hooks / "pre-merge-commit").exists()
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\nexit 0\n"
    # a foreign hook is left alone by uninstall
    assert uninstall(Repo.open(repo))[0].startswith("left")


def test_core_hooks_path_is_honoured(repo: Path) -> None:
    """The hooks go where core.hooksPath says and git runs them there: a quarantined patch's
    merge is refused, committed work's merge passes."""
    git(repo, "config", "core.hooksPath", ".githooks")
    install(Repo.open(repo / ".git" / ".."))
    assert (repo / ".githooks" / "pre-push").exists()
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    # and git really runs it: a merge of a quarantined patch is refused
    s, _ = scripted_run(repo)
    advance_main(repo)
    proc = run_git(repo, "merge", "--no-edit", s.patches["b"])
    assert proc.returncode != 0 and "quarantined" in proc.stderr
    git(repo, "merge", "--abort")
    # and the merge of committed work passes it
    proc = run_git(repo, "merge", "--no-edit", f"refs/uet/integration/{s.run}")
    assert proc.returncode == 0, proc.stderr
    assert git(repo, "rev-parse", "HEAD^2") == s.integration
    assert (repo / "a.txt").exists() and (repo / "c.txt").exists()
    uninstall(Repo.open(repo))
    assert not (repo / ".githooks" / "pre-push").exists()


def test_hook_fails_closed_when_its_python_is_gone(repo: Path) -> None:
    s, _ = scripted_run(repo)
    advance_main(repo)
    install(Repo.open(repo), python=str(repo / "no-such-python"))
    proc = run_git(repo, "merge", "--no-edit", f"refs/uet/integration/{s.run}")
    assert proc.returncode != 0
    assert "no-such-python is gone; run 'uet hooks install' again" in proc.stderr
