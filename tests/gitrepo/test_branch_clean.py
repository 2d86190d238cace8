"""The first look at a landing reads the index in process (``_clean_by_index``) and only says
"no local change where the landing writes" when ``git status`` certainly says so too; on
anything else git is asked, and the look under the lock always asks git."""

from __future__ import annotations

import gc
import os
import subprocess as sp
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo
from uet_git.gitrepo import ffblockers
from uet_git.gitrepo.branch import fast_forward
from uet_git.gitrepo.checkouts import git_dir_of
from uet_git.gitrepo.ffblockers import ff_blockers
from uet_git.gitrepo.indexclean import _clean_by_index
from uet_git.gitrepo.landpaths import _tree_changes
from uet_git.gitrepo.repo import Repo

REF = "refs/heads/main"
PAST = 1_500_000_000


def settle(path: Path) -> None:
    """Every file's times in the past and the index rewritten after them: what a checkout the
    user last touched a while ago looks like (no entry is racy)."""
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d != ".git"]
        for f in files:
            os.utime(os.path.join(root, f), (PAST, PAST), follow_symlinks=False)
    time.sleep(0.01)
    git(path, "update-index", "-q", "--refresh")


@pytest.fixture(scope="module")
def _landing_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``landing``'s settled repository and its two commits, built once per module."""
    tmp_path = tmp_path_factory.mktemp("landing")
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "keep.txt": "keep\n",
                                         "d/b.txt": "b\n"})
    old = git(path, "rev-parse", "HEAD")
    stage = tmp_path / "stage"
    git(path, "worktree", "add", "-q", "--detach", str(stage))
    (stage / "a.txt").write_text("a2\n")
    (stage / "d" / "b.txt").unlink()
    (stage / "d" / "new.txt").write_text("new\n")
    (stage / "added").write_text("a file the landing adds\n")
    git(stage, "add", "-A")
    git(stage, "commit", "-q", "-m", "land")
    new = git(stage, "rev-parse", "HEAD")
    git(path, "worktree", "remove", "--force", str(stage))
    settle(path)
    return path, old, new


@pytest.fixture
def landing(_landing_template: tuple[Path, str, str], tmp_path: Path) -> tuple[Repo, str, str]:
    """A copy of the settled repository: its files keep their times in the past (copy2), and
    the index gets the copy's inodes and ctimes written after them, as ``settle``'s
    ``update-index --refresh`` would (``restat_index``; git itself when that cannot)."""
    template, old, new = _landing_template
    path = tmp_path / "repo"
    copy_repo(template, path)
    return Repo.open(path), old, new


def clean(repo: Repo, old: str, new: str) -> bool:
    co = repo.workdir
    return _clean_by_index(repo, co, git_dir_of(co, repo), old, _tree_changes(repo, old, new))


def git_local(path: Path) -> set[str]:
    out = sp.run(["git", "status", "--porcelain", "-z", "--untracked-files=no", "--no-renames"],
                 cwd=path, check=True, capture_output=True, text=True).stdout
    return {item[3:] for item in out.split("\0") if len(item) > 3}


def test_a_settled_clean_checkout_is_decided_in_process(landing) -> None:
    repo, old, new = landing
    (repo.workdir / "keep.txt").write_text("an unrelated edit\n")
    (repo.workdir / "d" / "mine.txt").write_text("next to the landed ones, not one of them\n")
    git(repo.workdir, "add", "d/mine.txt")
    assert clean(repo, old, new)
    assert git_local(repo.workdir) == {"keep.txt", "d/mine.txt"}
    assert ff_blockers(repo, repo.workdir, old, new, ref=REF) == []
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert git_local(repo.workdir) == {"keep.txt", "d/mine.txt"}


def _same_size_edit(p: Path) -> None:
    st = p.stat()
    p.write_text("A\n")
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the ctime tells


def _mode(p: Path) -> None:
    p.chmod(0o755)


def _typechange(p: Path) -> None:
    p.unlink()
    p.symlink_to("keep.txt")


def _run(*args: str) -> Callable[[Path], None]:
    """git ARGS in the repository of the path it is given."""
    def go(p: Path) -> None:
        root = next(d for d in p.parents if (d / ".git").exists())
        sp.run(["git", *args], cwd=root, check=True, capture_output=True)
    return go


CASES: dict[str, tuple[str, Callable[[Path], None]]] = {
    "same-size-edit": ("a.txt", _same_size_edit),
    "deleted": ("a.txt", Path.unlink),
    "mode": ("a.txt", _mode),
    "typechange": ("a.txt", _typechange),
    "racy-touch": ("a.txt", lambda p: os.utime(p)),
    "staged": ("a.txt", lambda p: (p.write_text("staged\n"), _run("add", "a.txt")(p))),
    "staged-delete": ("a.txt", _run("rm", "-q", "--cached", "a.txt")),
    "intent-to-add": ("added", lambda p: (p.write_text("mine\n"),
                                          _run("add", "-N", "added")(p))),
    "staged-under-added-file": ("added", lambda p: (p.mkdir(), (p / "x").write_text("x\n"),
                                                    _run("add", "added/x")(p))),
    "assume-unchanged": ("a.txt", _run("update-index", "--assume-unchanged", "a.txt")),
    "skip-worktree": ("a.txt", _run("update-index", "--skip-worktree", "a.txt")),
    "split-index": ("a.txt", _run("update-index", "--split-index")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_anything_but_plainly_clean_is_left_to_git(landing, case: str) -> None:
    repo, old, new = landing
    rel, make = CASES[case]
    target = repo.workdir / rel
    make(target)
    assert not clean(repo, old, new)
    # What the landing then says is git's answer, as before.
    lines = ff_blockers(repo, repo.workdir, old, new, ref=REF)
    local = git_local(repo.workdir)
    if local & {"a.txt", "added", "added/x", "d/b.txt", "d/new.txt", "d/mine.txt"}:
        assert any("local changes to" in line for line in lines), (local, lines)
    else:
        assert not any("local changes to" in line for line in lines), (local, lines)


def test_unmerged_index_is_left_to_git(landing) -> None:
    repo, old, new = landing
    blob = git(repo.workdir, "hash-object", "-w", "--stdin", input="theirs\n")
    info = f"100644 {blob} 2\tkeep.txt\n100644 {blob} 3\tkeep.txt\n"
    git(repo.workdir, "update-index", "--index-info", input=info)
    assert not clean(repo, old, new)


def test_submodule_change_is_left_to_git(tmp_path: Path) -> None:
    sub = make_repo(tmp_path / "sub", {"s.txt": "s\n"})
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    git(path, "commit", "-q", "-m", "sub")
    old = git(path, "rev-parse", "HEAD")
    git(sub, "commit", "-q", "--allow-empty", "-m", "moved")
    git(path / "sub", "fetch", "-q", "origin")
    git(path / "sub", "checkout", "-q", "FETCH_HEAD")
    git(path, "commit", "-q", "-am", "bump")
    new = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", REF, old)
    git(path, "read-tree", old)
    settle(path)
    assert not clean(Repo.open(path), old, new)


@pytest.mark.parametrize("edit", ["modified", "staged"])
def test_a_wrong_clean_answer_still_loses_nothing(landing, edit: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the in-process answer ever wrong (here: forced), ``read-tree -m -u`` still refuses
    to overwrite a local change, and nothing moves."""
    repo, old, new = landing
    a = repo.workdir / "a.txt"
    if edit == "modified":
        a.write_text("my edit, longer than the file was\n")
    else:
        a.write_text("my staged edit\n")
        git(repo.workdir, "add", "a.txt")
    before = a.read_bytes()
    index_before = git(repo.workdir, "ls-files", "-s")
    monkeypatch.setattr(ffblockers, "_clean_by_index", lambda *args: True)
    res = fast_forward(repo, REF, old, new)
    assert not res.moved
    assert repo.read_ref(REF) == old
    assert a.read_bytes() == before
    assert git(repo.workdir, "ls-files", "-s") == index_before
    assert not (repo.git_dir / "index.lock").exists()


def test_an_index_libgit2_cannot_read_is_left_to_git_quietly(
        landing, monkeypatch: pytest.MonkeyPatch) -> None:
    """No object is left that complains on stderr when collected (the CLI's one line)."""
    repo, old, new = landing
    index = repo.git_dir / "index"
    data = bytearray(index.read_bytes())
    data[4:8] = (99).to_bytes(4, "big")  # a version no reader knows
    index.write_bytes(bytes(data))
    complaints: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", complaints.append)
    assert not clean(repo, old, new)
    gc.collect()
    assert complaints == []
