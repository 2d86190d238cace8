"""Recovery reads the index copy in process (``_index_entries``) as ``git ls-files -s`` lists
it, and leaves an index whose stat data is current (``git diff-files``, which trusts it, finds
nothing) with or without the closing refresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.branch import recover
from uet_git.gitrepo.checkouts import git_dir_of
from uet_git.gitrepo.converge import _index_entries, _ls_index
from uet_git.gitrepo.indexlock import _Held
from uet_git.gitrepo.repo import Repo

REF = "refs/heads/main"
FILES = {"a.txt": "a\n", "run.sh": "#!/bin/sh\n", "d/b.txt": "b\n", "keep.txt": "k\n"}


def held(repo: Repo) -> _Held:
    h = _Held(repo, repo.workdir, git_dir_of(repo.workdir, repo))
    h.acquire()
    return h


@pytest.mark.parametrize("how", ["plain", "unmerged", "intent-to-add", "split-index"])
def test_index_entries_are_what_ls_files_lists(tmp_path: Path, how: str) -> None:
    path = make_repo(tmp_path / "repo", FILES)
    git(path, "update-index", "--chmod=+x", "run.sh")
    (path / "link").symlink_to("a.txt")
    git(path, "add", "link")
    if how == "unmerged":
        blob = git(path, "hash-object", "-w", "--stdin", input="theirs\n")
        git(path, "update-index", "--index-info",
            input=f"0 {'0' * 40}\tkeep.txt\n100644 {blob} 2\tkeep.txt\n"
                  f"100644 {blob} 3\tkeep.txt\n")
    elif how == "intent-to-add":
        (path / "new.txt").write_text("n\n")
        git(path, "add", "-N", "new.txt")
    elif how == "split-index":
        git(path, "update-index", "--split-index")
    repo = Repo.open(path)
    h = held(repo)
    try:
        paths = ["a.txt", "run.sh", "d/b.txt", "keep.txt", "link", "new.txt", "missing"]
        listed = _ls_index(h)
        assert _index_entries(h, paths) == {p: e for p, e in listed.items() if p in paths}
    finally:
        h.release()


@pytest.mark.parametrize("held_already", [True, False])
def test_recovered_index_has_current_stat_data(tmp_path: Path, held_already: bool) -> None:
    """The ref moved, the index is still at the old commit; the files of the new one are on
    disk already (``held_already``: the closing refresh records their stat data) or not yet
    (written with ``checkout-index -u``, which records it)."""
    path = make_repo(tmp_path / "repo", FILES)
    old = git(path, "rev-parse", "HEAD")
    stage = tmp_path / "stage"
    git(path, "worktree", "add", "-q", "--detach", str(stage))
    (stage / "a.txt").write_text("a2\n")
    (stage / "d" / "c.txt").write_text("c\n")
    git(stage, "add", "-A")
    git(stage, "commit", "-q", "-m", "new")
    new = git(stage, "rev-parse", "HEAD")
    git(path, "worktree", "remove", "--force", str(stage))
    if held_already:
        (path / "a.txt").write_text("a2\n")
        (path / "d" / "c.txt").write_text("c\n")
    git(path, "update-ref", REF, new, old)
    line = recover(Repo.open(path), REF, old, new, lock_owner_dead=True)
    assert "finished the landing" in line
    assert git(path, "diff-files", "--name-only") == ""
    assert git(path, "diff-index", "--cached", "--name-only", "HEAD") == ""
    assert git(path, "status", "--porcelain", "--untracked-files=all") == ""
