"""The slot reset without a git process (``cleanat``): whatever a tool left, the reset ends
exactly where ``git checkout -f --detach`` + ``git clean -ffdx`` would, checked with the git CLI;
and a slot already exactly at the commit is left alone (its index is not even rewritten)."""

from __future__ import annotations

import os
import subprocess as sp
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo
from uet_git.gitrepo.cleanat import clean_at, index_paths, write_head
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.worktrees import add_worktree, admin_dir, reset_worktree


@pytest.fixture(scope="module")
def _two_commits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The slot's repository, built once: each test gets a copy (the same commits, since the
    tests' git identity and dates are fixed), not four git processes of its own."""
    path = make_repo(tmp_path_factory.mktemp("slot") / "repo", {
        "a.txt": "a\n", "src/b.txt": "b\n", "src/c.txt": "c\n", ".gitignore": "*.log\n"})
    first = git(path, "rev-parse", "HEAD")
    (path / "a.txt").write_text("a2\n")
    (path / "d.txt").write_text("d\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "second")
    return path, first, git(path, "rev-parse", "HEAD")


@pytest.fixture
def slot(_two_commits: tuple[Path, str, str], tmp_path: Path) -> tuple[Repo, Path, str, str]:
    template, first, second = _two_commits
    path = tmp_path / "repo"
    copy_repo(template, path)
    repo = Repo.open(path)
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, first)
    return repo, wt, first, second


def _status(wt: Path) -> tuple[str | None, bool, list[str]]:
    """``git status --porcelain=v2 --branch --ignored --untracked-files=all`` read as HEAD's
    id (None when unborn), whether HEAD is detached, and its entry lines. One process for
    what ``rev-parse HEAD``, ``symbolic-ref -q HEAD`` and the v1 ``status --porcelain`` say:
    git prints ``branch.oid`` from its own lookup of HEAD, ``branch.head (detached)`` exactly
    when HEAD is not a symbolic ref (wt-status.c; no mutation here makes a branch of that
    name), and the v2 entries are the same staged, unstaged, untracked and ignored paths as
    v1's, in another layout."""
    out = sp.run(["git", "status", "--porcelain=v2", "--branch", "--ignored",
                  "--untracked-files=all"], cwd=wt, capture_output=True, text=True,
                 check=True).stdout.splitlines()
    oid = next((ln.split()[2] for ln in out if ln.startswith("# branch.oid ")), None)
    detached = "# branch.head (detached)" in out
    return (None if oid == "(initial)" else oid), detached, [
        ln for ln in out if not ln.startswith("# ")]


def _index_flags(wt: Path) -> list[tuple[str, str]]:
    """``git ls-files -v -z``: (tag, path) per index entry; the paths are ``git ls-files``'s
    (``-v`` only puts the tag before each)."""
    out = sp.run(["git", "ls-files", "-v", "-z"], cwd=wt, capture_output=True, text=True,
                 check=True).stdout
    return [(entry[:1], entry[2:]) for entry in out.split("\0") if entry]


def _blobs(wt: Path, commit: str, paths: list[str]) -> list[bytes]:
    """``git show COMMIT:PATH`` of each path, in one ``git cat-file --batch``: for a blob
    both print its bytes as stored (no textconv or filter unless asked for)."""
    out = sp.run(["git", "cat-file", "--batch"], cwd=wt, capture_output=True, check=True,
                 input="".join(f"{commit}:{p}\n" for p in paths).encode()).stdout
    blobs, pos = [], 0
    for p in paths:
        header, pos = out[pos:out.index(b"\n", pos)].split(), out.index(b"\n", pos) + 1
        assert len(header) == 3 and header[1] == b"blob", (p, header)
        size = int(header[2])
        blobs.append(out[pos:pos + size])
        pos += size + 1
    assert pos == len(out)
    return blobs


def _exactly_at(wt: Path, commit: str, *, content: bool = True) -> None:
    """What git says about the slot: detached at ``commit``, nothing staged, modified,
    untracked or ignored, no entry flagged, index and files equal to the commit."""
    # Also all ``git diff --name-only COMMIT`` could say: with HEAD at the commit, its
    # changes are status's two comparisons (HEAD to index, index to the files) made one.
    assert _status(wt) == (commit, True, [])
    entries = _index_flags(wt)
    assert all(tag == "H" for tag, _ in entries)
    paths = [p for _, p in entries] if content else []
    assert [(wt / rel).read_bytes() for rel in paths] == _blobs(wt, commit, paths)


def _same_size_same_mtime(wt: Path) -> None:
    st = (wt / "a.txt").stat()
    (wt / "a.txt").write_text("X\n")
    os.utime(wt / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))


def _merge_conflict(wt: Path) -> None:
    git(wt, "checkout", "-q", "-b", "side")
    (wt / "a.txt").write_text("side\n")
    git(wt, "commit", "-qam", "side")
    git(wt, "checkout", "-q", "--detach", "HEAD~1")
    (wt / "a.txt").write_text("other\n")
    git(wt, "commit", "-qam", "other")
    sp.run(["git", "merge", "side"], cwd=wt, capture_output=True)


def _run(*steps: object) -> None:
    """The mutations below are expressions: their steps ran as the arguments were built."""


MUTATIONS: dict[str, Callable[[Path], None]] = {
    "nothing": lambda wt: None,
    "same size, same mtime": _same_size_same_mtime,
    "modified": lambda wt: _run((wt / "src/b.txt").write_text("changed\n")),
    "deleted": lambda wt: (wt / "src/b.txt").unlink(),
    "untracked file": lambda wt: _run((wt / "new.txt").write_text("n\n")),
    "ignored file": lambda wt: _run((wt / "x.log").write_text("l\n")),
    "empty directory": lambda wt: (wt / "empty").mkdir(),
    "nested repository": lambda wt: _run(git(wt, "init", "-q", "sub")),
    "file became a directory": lambda wt: _run((wt / "a.txt").unlink(), (wt / "a.txt").mkdir(),
                                               (wt / "a.txt" / "in").write_text("i\n")),
    "directory became a symlink": lambda wt: _run(
        [p.unlink() for p in (wt / "src").iterdir()], (wt / "src").rmdir(),
        (wt / "src").symlink_to(wt.parent)),
    "exec bit": lambda wt: (wt / "a.txt").chmod(0o755),
    "staged change": lambda wt: _run((wt / "a.txt").write_text("s\n"),
                                     git(wt, "add", "a.txt")),
    "assume-unchanged": lambda wt: _run(git(wt, "update-index", "--assume-unchanged", "a.txt"),
                                        (wt / "a.txt").write_text("hidden\n")),
    "skip-worktree": lambda wt: _run(git(wt, "update-index", "--skip-worktree", "a.txt"),
                                     (wt / "a.txt").unlink()),
    "intent-to-add": lambda wt: _run((wt / "n.txt").write_text("n\n"),
                                     git(wt, "add", "-N", "n.txt")),
    "index v4": lambda wt: _run(git(wt, "update-index", "--index-version", "4")),
    "split index": lambda wt: _run(git(wt, "update-index", "--split-index"),
                                   (wt / "a.txt").write_text("z\n")),
    "tool commit": lambda wt: _run((wt / "a.txt").write_text("t\n"),
                                   git(wt, "commit", "-qam", "tool")),
    "on a branch": lambda wt: _run(git(wt, "checkout", "-q", "-b", "tool-branch")),
    "merge conflict": _merge_conflict,
    ".git file rewritten": lambda wt: _run((wt / ".git").write_text("gitdir: /nowhere\n")),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("to_second", [False, True], ids=["same commit", "other commit"])
def test_reset_ends_exactly_at_the_commit_whatever_the_tool_left(slot, name: str,
                                                                  to_second: bool) -> None:
    repo, wt, first, second = slot
    MUTATIONS[name](wt)
    target = second if to_second else first
    reset_worktree(repo, wt, target)
    _exactly_at(wt, target)
    # And back: from a clean slot, the in-process checkout.
    other = first if to_second else second
    reset_worktree(repo, wt, other)
    _exactly_at(wt, other)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_clean_at_agrees_with_git_status(slot, name: str) -> None:
    repo, wt, first, _ = slot
    MUTATIONS[name](wt)
    admin = admin_dir(repo, wt) if name != ".git file rewritten" else None
    if admin is None:
        return  # reset_worktree repairs the gitfile before asking
    git_clean = (_status(wt) == (first, True, [])
                 and all(tag == "H" for tag, _ in _index_flags(wt)))
    if clean_at(admin, wt, first):
        assert git_clean, name
    if name == "nothing":
        assert clean_at(admin, wt, first)


def test_a_slot_already_at_the_commit_is_left_alone(slot) -> None:
    repo, wt, first, _ = slot
    index = admin_dir(repo, wt) / "index"
    before = index.stat()
    reset_worktree(repo, wt, first)
    after = index.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    _exactly_at(wt, first)


def test_index_paths_are_git_ls_files(slot) -> None:
    repo, wt, _, _ = slot
    admin = admin_dir(repo, wt)
    assert index_paths(admin) == set(git(wt, "ls-files").splitlines())
    (wt / "deep" / "er").mkdir(parents=True)
    (wt / "deep" / "er" / ("n" * 200)).write_text("long name\n")
    git(wt, "add", "-A")
    assert index_paths(admin) == set(git(wt, "ls-files").splitlines())
    assert index_paths(admin, limit=2) is None


def test_attributes_leave_the_checkout_to_git(slot) -> None:
    repo, wt, _, second = slot
    path = repo.workdir
    (path / ".gitattributes").write_text("u.txt working-tree-encoding=UTF-16\n")
    (path / "u.txt").write_bytes("utf16 on disk\n".encode("utf-16"))
    git(path, "add", "-A")
    git(path, "commit", "-qm", "attributes")
    third = git(path, "rev-parse", "HEAD")
    reset_worktree(repo, wt, third)
    _exactly_at(wt, third, content=False)  # u.txt is UTF-16 on disk, UTF-8 in the blob
    assert (wt / "u.txt").read_bytes() == "utf16 on disk\n".encode("utf-16")
    reset_worktree(repo, wt, second)
    _exactly_at(wt, second)


def test_write_head_detaches_as_git_reads_it(slot) -> None:
    repo, wt, first, second = slot
    admin = admin_dir(repo, wt)
    git(wt, "checkout", "-q", "-b", "tool-branch")  # a symbolic HEAD a tool left
    assert write_head(admin, second)
    assert git(wt, "rev-parse", "HEAD") == second
    assert sp.run(["git", "symbolic-ref", "-q", "HEAD"], cwd=wt).returncode != 0
    assert git(repo.workdir, "rev-parse", "tool-branch") == first  # the branch did not move
    assert not (admin / "HEAD.lock").exists()
    (admin / "HEAD.lock").write_text("held\n")  # git holds it: nothing is written
    assert not write_head(admin, first)
    assert git(wt, "rev-parse", "HEAD") == second
    (admin / "HEAD.lock").unlink()
    assert not write_head(admin, first[:12])  # only a full id
    assert not write_head(admin, "refs/heads/main" + "0" * 25)
    assert git(wt, "rev-parse", "HEAD") == second
