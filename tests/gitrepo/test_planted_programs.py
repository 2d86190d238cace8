"""uet's own git never runs a program a tool planted in the repository's config.

A tool runs inside a worktree and can write ``.git/config`` and ``.git/hooks``. Here every hook
(in a planted ``core.hooksPath`` and in the default hooks dir), ``core.fsmonitor``,
``diff.external`` and ``core.pager`` point at scripts that leave a marker file; every gitrepo
operation then runs, and no marker may appear. Each test first shows that plain git in the same
repository does run the planted program, so the check is on a live trap.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.merge import count_commits, diff_bytes, rev_list
from uet_git.gitrepo.refs import RefUpdater
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import apply_patch, apply_patch_ex, snapshot_tree
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    dirty_paths,
    list_worktrees,
    remove_worktree,
    reset_index,
    reset_worktree,
    worktree_head,
)

HOOKS = (
    "applypatch-msg", "pre-applypatch", "post-applypatch", "pre-commit", "pre-merge-commit",
    "prepare-commit-msg", "commit-msg", "post-commit", "pre-rebase", "post-checkout",
    "post-merge", "pre-push", "pre-receive", "update", "proc-receive", "post-receive",
    "post-update", "reference-transaction", "push-to-checkout", "pre-auto-gc", "post-rewrite",
    "sendemail-validate", "fsmonitor-watchman", "post-index-change",
)


def _script(path: Path, marks: Path, name: str) -> Path:
    path.write_text(f"#!/bin/sh\necho {name} \"$@\" >> '{marks}'\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def trap(tmp_path: Path) -> tuple[Repo, Path, Path]:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", ".gitignore": "*.log\n"})
    marks = tmp_path / "marks"
    planted = tmp_path / "planted-hooks"
    planted.mkdir()
    for name in HOOKS:
        _script(planted / name, marks, f"hooksPath:{name}")
        _script(path / ".git" / "hooks" / name, marks, f"hooks:{name}")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    git(path, "config", "core.hooksPath", str(planted))
    git(path, "config", "core.fsmonitor", str(_script(bin_ / "fsmonitor", marks, "fsmonitor")))
    git(path, "config", "diff.external", str(_script(bin_ / "extdiff", marks, "diff.external")))
    git(path, "config", "core.pager", str(_script(bin_ / "pager", marks, "pager")))
    git(path, "config", "pager.diff", "true")
    return Repo.open(path), marks, tmp_path


def _marks(marks: Path) -> list[str]:
    return marks.read_text().splitlines() if marks.exists() else []


def _plain_git_runs_the_trap(repo: Repo, marks: Path) -> None:
    """The trap is live: git without uet's settings runs the planted programs."""
    head = repo.rev_parse("HEAD")
    assert head is not None
    subprocess.run(["git", "update-ref", "refs/trap/x", head], cwd=repo.workdir, check=True)
    subprocess.run(["git", "status", "--porcelain"], cwd=repo.workdir, check=True,
                   capture_output=True)
    subprocess.run(["git", "diff", "HEAD"], cwd=repo.workdir, check=True, capture_output=True)
    seen = " ".join(_marks(marks))
    assert "hooksPath:reference-transaction" in seen
    assert "fsmonitor" in seen
    subprocess.run(["git", "update-ref", "-d", "refs/trap/x"], cwd=repo.workdir, check=True)
    marks.unlink()


def test_worktree_life_cycle_runs_no_planted_program(trap) -> None:
    repo, marks, _ = trap
    _plain_git_runs_the_trap(repo, marks)
    base = repo.rev_parse("HEAD")
    assert base is not None
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base, lock_reason="uet test")
    (wt / "a.txt").write_text("changed\n")
    (wt / "new.txt").write_text("new\n")
    (wt / "x.log").write_text("ignored\n")
    assert dirty_paths(repo, wt) == ["a.txt", "new.txt"]
    tree = snapshot_tree(repo, wt)
    patch = objects.make_commit(repo, tree, [base], "patch")
    reset_index(repo, wt, patch)
    assert worktree_head(repo, wt) == patch
    reset_worktree(repo, wt, base)
    reset_worktree(repo, wt, patch, keep_ignored=True)
    assert [w.path for w in list_worktrees(repo)][-1] == wt
    diff = diff_bytes(repo, base, patch)
    reset_worktree(repo, wt, base)
    assert apply_patch(repo, wt, diff) is None
    assert rev_list(repo, patch, f"^{base}") == [patch]
    assert count_commits(repo, base, patch) == 1
    remove_worktree(repo, wt)
    assert _marks(marks) == []


def test_snapshot_through_the_git_cli_runs_no_planted_program(trap) -> None:
    """A configured filter driver sends the snapshot through ``git add -A`` (and, without an
    index, ``read-tree``): still no hook or fsmonitor."""
    repo, marks, _ = trap
    git(repo.workdir, "config", "filter.noop.clean", "cat")
    repo = Repo.open(repo.workdir)
    _plain_git_runs_the_trap(repo, marks)
    base = repo.rev_parse("HEAD")
    assert base is not None
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    (wt / "a.txt").write_text("cli\n")
    tree = snapshot_tree(repo, wt)
    assert objects.read_blob(repo, tree, "a.txt") == b"cli\n"
    (admin_dir(repo, wt) / "index").unlink()
    assert snapshot_tree(repo, wt) == tree
    assert _marks(marks) == []


def test_mailbox_apply_runs_no_planted_program(trap) -> None:
    repo, marks, _ = trap
    _plain_git_runs_the_trap(repo, marks)
    path = repo.workdir
    (path / "a.txt").write_text("from mail\n")
    git(path, "-c", "core.hooksPath=/dev/null", "commit", "-qam", "mail subject")
    mbox = subprocess.run(["git", "-c", "core.hooksPath=/dev/null", "format-patch", "--stdout",
                           "-1"], cwd=path, capture_output=True, check=True).stdout
    base = repo.rev_parse("HEAD~1")
    assert base is not None
    marks.unlink(missing_ok=True)
    wt = repo.uet_dir / "worktrees" / "1"
    add_worktree(repo, wt, base)
    res = apply_patch_ex(repo, wt, mbox, mbox=True)
    assert res.error is None and res.messages[0].message == "mail subject"
    assert (wt / "a.txt").read_text() == "from mail\n"
    assert _marks(marks) == []


@pytest.mark.parametrize("long_lived", [False, True])
def test_ref_transactions_run_no_reference_transaction_hook(trap, long_lived: bool) -> None:
    repo, marks, _ = trap
    _plain_git_runs_the_trap(repo, marks)
    head = repo.rev_parse("HEAD")
    assert head is not None
    updater = RefUpdater(repo) if long_lived else None
    try:
        repo.transaction(updater).create("refs/uet/t/a", head).commit()
        repo.transaction(updater).delete("refs/uet/t/a", head).commit()
    finally:
        if updater is not None:
            updater.close()
    assert repo.list_refs("refs/uet/") == {}
    assert _marks(marks) == []


def test_repo_git_runs_no_pager_or_external_diff(trap) -> None:
    repo, marks, _ = trap
    _plain_git_runs_the_trap(repo, marks)
    (repo.workdir / "a.txt").write_text("dirty\n")
    # Even a porcelain diff uet might run: no external diff, no pager, no fsmonitor.
    out = repo.git("diff", "--no-ext-diff", "--no-textconv").stdout
    assert b"+dirty" in out
    repo.git("status", "--porcelain")
    assert objects.signature(repo).name
    assert _marks(marks) == []


def test_hooks_dir_hooks_do_not_run_without_hooks_path(trap) -> None:
    """With only the default ``.git/hooks`` planted (no core.hooksPath), nothing runs either."""
    repo, marks, _ = trap
    git(repo.workdir, "config", "--unset", "core.hooksPath")
    head = repo.rev_parse("HEAD")
    assert head is not None
    subprocess.run(["git", "update-ref", "refs/trap/y", head], cwd=repo.workdir, check=True)
    assert "hooks:reference-transaction" in " ".join(_marks(marks))
    marks.unlink()
    wt = repo.uet_dir / "worktrees" / "2"
    add_worktree(repo, wt, head)
    reset_worktree(repo, wt, head)
    repo.transaction().create("refs/uet/t/b", head).commit()
    remove_worktree(repo, wt)
    assert _marks(marks) == []
    assert os.environ.get("GIT_DIR") is None


# ---------------------------------------------------------------- filter drivers

def _evil_filter(cwd: Path, marks: Path, tmp: Path, *scope: str) -> None:
    prog = _script(tmp / "evil-filter", marks, "filter:evil")
    for var in ("clean", "smudge"):
        git(cwd, "config", *scope, f"filter.evil.{var}", f"{prog} {var}; cat")
    git(cwd, "config", *scope, "filter.evil.required", "true")


@pytest.fixture
def filtered(tmp_path: Path) -> tuple[Repo, Path, Path, str]:
    """A repository whose committed .gitattributes routes every file through driver ``evil``,
    which is not configured when uet opens it."""
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", ".gitattributes": "* filter=evil\n"})
    repo = Repo.open(path)
    head = repo.rev_parse("HEAD")
    assert head is not None
    return repo, tmp_path / "marks", tmp_path, head


def test_a_filter_planted_after_open_never_runs(filtered) -> None:
    repo, marks, tmp, base = filtered
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    _evil_filter(repo.workdir, marks, tmp)
    # Plain git would run it now.
    subprocess.run(["git", "-C", str(wt), "status"], check=False, capture_output=True)
    (wt / "a.txt").write_text("tool wrote this\n")
    subprocess.run(["git", "-C", str(wt), "add", "-A", "--dry-run"], check=False,
                   capture_output=True)
    subprocess.run(["git", "-C", str(wt), "diff", "--stat"], check=False, capture_output=True)
    assert any(m.startswith("filter:evil") for m in _marks(marks))
    marks.unlink()
    assert dirty_paths(repo, wt) == ["a.txt"]
    tree = snapshot_tree(repo, wt)
    assert objects.read_blob(repo, tree, "a.txt") == b"tool wrote this\n"
    patch = objects.make_commit(repo, tree, [base], "patch")
    reset_index(repo, wt, patch)
    reset_worktree(repo, wt, base)
    assert (wt / "a.txt").read_text() == "a\n"
    assert apply_patch(repo, wt, diff_bytes(repo, base, patch)) is None
    wt2 = repo.uet_dir / "worktrees" / "1"
    add_worktree(repo, wt2, patch)
    assert (wt2 / "a.txt").read_text() == "tool wrote this\n"
    remove_worktree(repo, wt2)
    assert _marks(marks) == []


def test_a_filter_configured_before_open_keeps_working(filtered) -> None:
    repo, marks, tmp, base = filtered
    git(repo.workdir, "config", "filter.evil.clean", "tr a-z A-Z")
    git(repo.workdir, "config", "filter.evil.smudge", "cat")
    repo = Repo.open(repo.workdir)  # the user's driver (think git-lfs), there before uet ran
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    (wt / "a.txt").write_text("hello\n")
    assert objects.read_blob(repo, snapshot_tree(repo, wt), "a.txt") == b"HELLO\n"
    # A tool repoints the trusted driver at its own program: uet keeps the original.
    _evil_filter(repo.workdir, marks, tmp)
    (wt / "a.txt").write_text("again\n")
    assert objects.read_blob(repo, snapshot_tree(repo, wt), "a.txt") == b"AGAIN\n"
    reset_worktree(repo, wt, base)
    assert _marks(marks) == []


def test_a_filter_planted_in_a_worktree_config(filtered) -> None:
    repo, marks, tmp, base = filtered
    git(repo.workdir, "config", "extensions.worktreeConfig", "true")
    repo = Repo.open(repo.workdir)
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    (wt / "a.txt").write_text("tool\n")
    assert objects.read_blob(repo, snapshot_tree(repo, wt), "a.txt") == b"tool\n"
    # What `git config --worktree` writes from inside the tool's worktree.
    _evil_filter(wt, marks, tmp, "--worktree")
    subprocess.run(["git", "-C", str(wt), "status"], check=False, capture_output=True)
    assert _marks(marks) != []  # plain git runs it from there
    marks.unlink()
    (wt / "a.txt").write_text("tool 1\n")
    assert objects.read_blob(repo, snapshot_tree(repo, wt), "a.txt") == b"tool 1\n"
    assert dirty_paths(repo, wt) == ["a.txt"]
    reset_worktree(repo, wt, base)
    assert _marks(marks) == []


def test_a_filter_planted_through_an_included_file(filtered) -> None:
    repo, marks, tmp, base = filtered
    inc = tmp / "included"
    inc.write_text("")
    git(repo.workdir, "config", "include.path", str(inc))
    repo = Repo.open(repo.workdir)
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, base)
    (wt / "a.txt").write_text("tool\n")
    assert dirty_paths(repo, wt) == ["a.txt"]
    # The included file changes; the config files' stat data does not.
    _evil_filter(repo.workdir, marks, tmp, "--file", str(inc))
    marks.unlink(missing_ok=True)
    (wt / "a.txt").write_text("tool 2\n")
    assert dirty_paths(repo, wt) == ["a.txt"]
    assert objects.read_blob(repo, snapshot_tree(repo, wt), "a.txt") == b"tool 2\n"
    reset_worktree(repo, wt, base)
    assert _marks(marks) == []
