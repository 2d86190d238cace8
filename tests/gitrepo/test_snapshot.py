"""snapshot_tree takes what `git add -A` would, never .git; apply_patch applies diffs and mboxes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import apply_patch, apply_patch_ex, snapshot_tree
from uet_git.gitrepo.worktrees import add_worktree, admin_dir, reset_worktree


@pytest.fixture
def wt(tmp_path: Path) -> tuple[Repo, Path, str]:
    path = make_repo(tmp_path / "repo", {
        "a.txt": "a\n", "gone.txt": "bye\n", "run.sh": "#!/bin/sh\necho\n",
        "old/name.txt": "some content that is long enough to be a rename\n" * 3,
        ".gitignore": "*.log\nbuild/\n",
    })
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    w = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, w, base)
    return repo, w, base


def _ls(repo: Repo, tree: str) -> dict[str, tuple[str, str]]:
    """{path: (mode, blob oid)} of a tree, read by the git CLI."""
    out = git(repo.workdir, "ls-tree", "-r", "-z", tree).split("\0")
    entries = {}
    for line in filter(None, out):
        meta, path = line.split("\t", 1)
        mode, _, oid = meta.split()
        entries[path] = (mode, oid)
    return entries


def _blob(repo: Repo, oid: str) -> bytes:
    import subprocess
    return subprocess.run(["git", "cat-file", "blob", oid], cwd=repo.workdir,
                          capture_output=True, check=True).stdout


def _git_add_all_tree(w: Path, tmp: Path) -> str:
    """What the git CLI itself stages, with a throwaway index (the reference answer)."""
    import shutil
    import subprocess
    idx = tmp / "ref-index"
    shutil.copyfile(git(w, "rev-parse", "--git-path", "index"), idx)
    env = {**os.environ, "GIT_INDEX_FILE": str(idx)}
    subprocess.run(["git", "add", "-A"], cwd=w, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "write-tree"], cwd=w, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_snapshot_takes_every_kind_of_change(wt, tmp_path: Path) -> None:
    repo, w, _ = wt
    (w / "a.txt").write_text("changed\n")
    (w / "gone.txt").unlink()
    os.chmod(w / "run.sh", 0o755)
    (w / "new").mkdir()
    (w / "new" / "file.txt").write_text("new\n")
    (w / "img.bin").write_bytes(bytes(range(256)) * 4 + b"\0\xff")
    os.symlink("a.txt", w / "link")
    (w / "old" / "name.txt").rename(w / "moved.txt")
    (w / "debug.log").write_text("ignored\n")
    (w / "build").mkdir()
    (w / "build" / "out.o").write_text("ignored\n")
    tree = snapshot_tree(repo, w)
    entries = _ls(repo, tree)
    assert set(entries) == {".gitignore", "a.txt", "run.sh", "new/file.txt", "img.bin", "link",
                            "moved.txt"}
    assert entries["run.sh"][0] == "100755"
    assert entries["link"][0] == "120000" and _blob(repo, entries["link"][1]) == b"a.txt"
    assert _blob(repo, entries["img.bin"][1]) == bytes(range(256)) * 4 + b"\0\xff"
    assert _blob(repo, entries["a.txt"][1]) == b"changed\n"
    assert tree == _git_add_all_tree(w, tmp_path)
    # The worktree and its index are left as the tool left them.
    assert "?? new/file.txt" in git(w, "status", "--porcelain", "--untracked-files=all")


def test_snapshot_includes_tool_commits_and_staged_changes(wt) -> None:
    repo, w, _base = wt
    (w / "c1.txt").write_text("1\n")
    git(w, "add", "c1.txt")
    git(w, "commit", "-qm", "tool commit")
    (w / "staged.txt").write_text("s\n")
    git(w, "add", "staged.txt")
    (w / "a.txt").write_text("unstaged\n")
    entries = _ls(repo, snapshot_tree(repo, w))
    assert {"c1.txt", "staged.txt", "a.txt"} <= set(entries)
    assert _blob(repo, entries["a.txt"][1]) == b"unstaged\n"


def test_snapshot_never_takes_dot_git_content(wt, tmp_path: Path) -> None:
    repo, w, base = wt
    (w / ".git").unlink()  # the tool replaces the worktree's .git file with a directory
    (w / ".git").mkdir()
    (w / ".git" / "evil").write_text("evil\n")
    (w / "sub" / ".git").mkdir(parents=True)  # and makes a nested fake repository dir
    (w / "sub" / ".git" / "config").write_text("x\n")
    (w / "sub" / "real.txt").write_text("r\n")
    (w / "a.txt").write_text("edited\n")
    entries = _ls(repo, snapshot_tree(repo, w))
    assert not any(".git/" in p or (p.startswith(".git") and p != ".gitignore") for p in entries)
    assert "sub/real.txt" in entries and "a.txt" in entries
    reset_worktree(repo, w, base)
    assert git(w, "status", "--porcelain") == ""


def test_snapshot_with_conflicted_or_corrupt_index(wt) -> None:
    repo, w, base = wt
    git(w, "checkout", "-q", "-b", "side")
    (w / "a.txt").write_text("side\n")
    git(w, "commit", "-qam", "side")
    git(w, "checkout", "-q", "--detach", base)
    (w / "a.txt").write_text("other\n")
    git(w, "commit", "-qam", "other")
    git(w, "merge", "side", check=False)
    assert "<<<<<<<" in (w / "a.txt").read_text()
    entries = _ls(repo, snapshot_tree(repo, w))
    assert b"<<<<<<<" in _blob(repo, entries["a.txt"][1])
    reset_worktree(repo, w, base)
    (w / "new.txt").write_text("n\n")
    (admin_dir(repo, w) / "index").write_bytes(b"DIRC garbage")
    entries = _ls(repo, snapshot_tree(repo, w))
    assert "new.txt" in entries and "a.txt" in entries and "gone.txt" in entries


def test_snapshot_honours_info_exclude(wt) -> None:
    repo, w, _ = wt
    with open(repo.common_dir / "info" / "exclude", "a") as f:
        f.write(".aider*\n")
    (w / ".aider.chat.history.md").write_text("chat\n")
    (w / "real.txt").write_text("r\n")
    entries = _ls(repo, snapshot_tree(repo, w))
    assert "real.txt" in entries and ".aider.chat.history.md" not in entries


def _other_checkout_diff(tmp_path: Path, repo: Repo, base: str, *, mbox: bool) -> bytes:
    """Make changes in a scratch clone and return them as `git diff --binary` or format-patch."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo.workdir), str(clone))
    (clone / "a.txt").write_text("from patch\n")
    (clone / "bin.dat").write_bytes(b"\0\1\2binary")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "first patch", "-m", "first body")
    (clone / "gone.txt").unlink()
    os.chmod(clone / "run.sh", 0o755)
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "second patch")
    import subprocess
    args = ["format-patch", "--stdout", base] if mbox else ["diff", "--binary", base, "HEAD"]
    return subprocess.run(["git", *args], cwd=clone, capture_output=True, check=True).stdout


def test_apply_diff_and_mbox(wt, tmp_path: Path) -> None:
    repo, w, base = wt
    diff = _other_checkout_diff(tmp_path, repo, base, mbox=False)
    assert apply_patch(repo, w, b"Here is the patch:\n" + diff) is None
    entries = _ls(repo, snapshot_tree(repo, w))
    assert _blob(repo, entries["a.txt"][1]) == b"from patch\n"
    assert _blob(repo, entries["bin.dat"][1]) == b"\0\1\2binary"
    assert "gone.txt" not in entries and entries["run.sh"][0] == "100755"
    diff_tree = snapshot_tree(repo, w)

    reset_worktree(repo, w, base)
    (tmp_path / "m").mkdir()
    mbox = _other_checkout_diff(tmp_path / "m", repo, base, mbox=True)
    res = apply_patch_ex(repo, w, mbox, mbox=True)
    assert res.error is None
    assert [m.message for m in res.messages] == ["first patch\n\nfirst body", "second patch"]
    assert res.messages[0].author == "Test Author"
    assert snapshot_tree(repo, w) == diff_tree


def test_apply_errors_and_lenient_diffs(wt) -> None:
    repo, w, _base = wt
    bad = b"--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-not there\n+x\n"
    err = apply_patch(repo, w, bad)
    assert err and err.startswith("patch does not apply:")
    assert git(w, "status", "--porcelain") == ""  # all or nothing
    assert apply_patch(repo, w, b"") is None
    # A plain `diff -u` without a/ b/ prefixes and a wrong hunk count (as models write them).
    plain = b"--- a.txt\n+++ a.txt\n@@ -1,3 +1,3 @@\n-a\n+plain\n"
    assert apply_patch(repo, w, plain) is None
    assert (w / "a.txt").read_text() == "plain\n"
    assert apply_patch(repo, w, b"From nobody\nSubject: x\n\nno patch here\n", mbox=True) is None


def test_snapshot_runs_clean_filters_like_git(wt) -> None:
    repo, w, _ = wt
    git(repo.workdir, "config", "filter.upper.clean", "tr a-z A-Z")
    git(repo.workdir, "config", "filter.upper.smudge", "cat")
    # The user's drivers are those configured when uet opens the repository (filters.py).
    repo = Repo.open(repo.workdir)
    (w / ".gitattributes").write_text("*.up filter=upper\n")
    (w / "x.up").write_text("hello\n")
    entries = _ls(repo, snapshot_tree(repo, w))
    assert _blob(repo, entries["x.up"][1]) == b"HELLO\n"
