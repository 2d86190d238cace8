"""The in-process slot reset checks after its checkout only what the checkout wrote
(``cleanat._settled``): across every kind of change a commit can make to a path (a file
deleted with the directories it alone filled, a file become a directory and back, a regular
file become a symbolic link, the executable bit, new nested directories), the reset ends where
git says the worktree is exactly at the commit; the check fails on each way the checkout's
paths can differ from the commit's; and a checkout that converted line endings is left to git,
which ends at the same place."""

from __future__ import annotations

import os
import shutil
import subprocess as sp
from collections.abc import Callable
from pathlib import Path

import pygit2
import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import handles
from uet_git.gitrepo.cleanat import (
    _proved,
    _settled,
    clean_at,
    index_paths,
    reset_clean,
    write_head,
)
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import snapshot_tree, staged_snapshot
from uet_git.gitrepo.worktrees import (
    add_worktree,
    admin_dir,
    pin_head,
    reset_worktree,
    worktree_head,
)


def _commit_all(path: Path, message: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-qm", message)
    return git(path, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def _two_trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A: a file alone in nested directories, a file ``f``, a directory ``d``, a regular
    ``s.txt``, a non-executable ``run.sh``; B: those directories gone, ``f`` a directory,
    ``d`` a file, ``s.txt`` a symbolic link, ``run.sh`` executable, new nested directories."""
    path = make_repo(tmp_path_factory.mktemp("fast") / "repo", {
        "keep.txt": "keep\n", "gone/deep/only.txt": "only\n", "f": "file\n",
        "d/x.txt": "x\n", "s.txt": "keep.txt", "run.sh": "echo run\n"})
    a = git(path, "rev-parse", "HEAD")
    shutil.rmtree(path / "gone")
    (path / "f").unlink()
    (path / "f").mkdir()
    (path / "f" / "in.txt").write_text("in\n")
    shutil.rmtree(path / "d")
    (path / "d").write_text("d is a file\n")
    (path / "s.txt").unlink()
    (path / "s.txt").symlink_to("keep.txt")
    (path / "run.sh").chmod(0o755)
    (path / "new" / "a").mkdir(parents=True)
    (path / "new" / "a" / "b.txt").write_text("b\n")
    (path / "keep.txt").write_text("keep, changed\n")
    return path, a, _commit_all(path, "B")


@pytest.fixture
def slot(_two_trees: tuple[Path, str, str], tmp_path: Path) -> tuple[Repo, Path, str, str]:
    template, a, b = _two_trees
    path = tmp_path / "repo"
    shutil.copytree(template, path, symlinks=True)
    repo = Repo.open(path)
    wt = repo.uet_dir / "worktrees" / "0"
    add_worktree(repo, wt, a)
    return repo, wt, a, b


def _exactly_at(wt: Path, commit: str) -> None:
    """git's view: detached at ``commit``, nothing staged, modified, untracked or ignored, no
    entry flagged, and each file's bytes (a link's target) the commit's blob."""
    out = git(wt, "status", "--porcelain=v2", "--branch", "--ignored",
              "--untracked-files=all").splitlines()
    assert f"# branch.oid {commit}" in out and "# branch.head (detached)" in out
    assert [ln for ln in out if not ln.startswith("# ")] == []
    listed = git(wt, "ls-files", "-v", "-s").splitlines()
    assert listed and all(ln.startswith("H ") for ln in listed)
    for ln in listed:
        meta, rel = ln[2:].split("\t", 1)
        mode, oid = meta.split()[:2]
        full = wt / rel
        data = os.readlink(full).encode() if mode == "120000" else full.read_bytes()
        assert git(wt, "hash-object", "--stdin", "--no-filters", input=data.decode()) == oid
        assert os.path.islink(full) == (mode == "120000")
        if mode != "120000":
            assert bool(full.stat().st_mode & 0o100) == (mode == "100755"), rel


@pytest.mark.parametrize("there_and_back", [False, True], ids=["A to B", "B to A"])
def test_the_in_process_reset_ends_where_git_says_exactly_at(slot, there_and_back) -> None:
    repo, wt, a, b = slot
    admin = admin_dir(repo, wt)
    start, target = (b, a) if there_and_back else (a, b)
    reset_worktree(repo, wt, start)
    _exactly_at(wt, start)
    assert reset_clean(admin, wt, repo.common_dir, target)  # no git process did it
    _exactly_at(wt, target)
    assert not (wt / "gone").exists() if target == b else (wt / "gone" / "deep").is_dir()
    assert clean_at(admin, wt, target)


def _checked_out(repo: Repo, wt: Path, a: str, b: str,
                 change: Callable[[Path], None]) -> bool:
    """Reset to A, then what ``reset_clean`` does up to its check (libgit2's checkout of the
    paths A and B differ in, HEAD to B), then ``change``, then its check."""
    reset_worktree(repo, wt, a)
    admin = admin_dir(repo, wt)
    with handles.opened(admin) as wr:
        want, current = wr.get(b), wr.get(a)
        before = _proved(wr, admin, wt, current, 2000)
        assert before is not None
        delta = wr.index.diff_to_tree(want.tree)
        changed = {p for d in delta.deltas for p in (d.old_file.path, d.new_file.path)}
        wr.checkout_tree(want, paths=sorted(changed), strategy=(
            pygit2.enums.CheckoutStrategy.FORCE
            | pygit2.enums.CheckoutStrategy.DISABLE_PATHSPEC_MATCH))
        assert write_head(admin, b)
        change(wt)
        return _settled(wr, admin, wt, want, before, changed, 2000)


def _same_size(wt: Path) -> None:
    (wt / "keep.txt").write_text("KEEP, CHANGED\n")


def _recreated_dir(wt: Path) -> None:
    (wt / "gone" / "deep").mkdir(parents=True)


def _recreated_file(wt: Path) -> None:
    (wt / "gone" / "deep").mkdir(parents=True)
    (wt / "gone" / "deep" / "only.txt").write_text("only\n")


def _link_as_file(wt: Path) -> None:
    (wt / "s.txt").unlink()
    (wt / "s.txt").write_text("keep.txt")


def _dir_as_link(wt: Path) -> None:
    shutil.rmtree(wt / "new" / "a")
    (wt / "elsewhere").mkdir()
    (wt / "elsewhere" / "b.txt").write_text("b\n")
    (wt / "new" / "a").symlink_to(wt / "elsewhere")


AFTER_CHECKOUT: dict[str, Callable[[Path], None]] = {
    "written file changed, same size": _same_size,
    "executable bit lost": lambda wt: (wt / "run.sh").chmod(0o644),
    "emptied directory left": _recreated_dir,
    "removed file back": _recreated_file,
    "link made a regular file": _link_as_file,
    "new directory a symbolic link": _dir_as_link,
}


def test_the_check_after_the_checkout_passes_on_what_the_checkout_wrote(slot) -> None:
    repo, wt, a, b = slot
    assert _checked_out(repo, wt, a, b, lambda wt: None)
    _exactly_at(wt, b)


@pytest.mark.parametrize("name", sorted(AFTER_CHECKOUT))
def test_the_check_after_the_checkout_fails_where_git_sees_a_difference(slot, name) -> None:
    repo, wt, a, b = slot
    assert not _checked_out(repo, wt, a, b, AFTER_CHECKOUT[name])
    status = git(wt, "status", "--porcelain", "--ignored", "--untracked-files=all")
    # git agrees it is not exactly at B (an emptied directory git's status does not list,
    # but ``git clean -ffdx`` would remove it and ``git checkout`` would not have left it).
    assert status or (wt / "gone" / "deep").is_dir(), name
    reset_worktree(repo, wt, b)  # and the reset puts it right
    _exactly_at(wt, b)


def test_a_checkout_that_converts_line_endings_is_left_to_git(slot) -> None:
    repo, wt, a, b = slot
    git(repo.workdir, "config", "core.autocrlf", "true")
    reset_worktree(repo, wt, b)
    git(wt, "status", "--porcelain")  # git's own view of the stat data at B
    reset_worktree(repo, wt, a)  # libgit2 writes keep.txt with CRLF: not the blob's bytes
    out = git(wt, "status", "--porcelain=v2", "--branch", "--ignored", "--untracked-files=all")
    assert f"# branch.oid {a}" in out.splitlines()
    assert [ln for ln in out.splitlines() if not ln.startswith("# ")] == []
    assert git(wt, "diff", "--name-only", a) == ""


def test_a_staged_snapshot_leaves_the_slot_exactly_at_its_commit(slot) -> None:
    repo, wt, a, _ = slot
    (wt / "keep.txt").write_text("tool\n")
    (wt / "tool" / "new").mkdir(parents=True)
    (wt / "tool" / "new" / "file").write_text("n\n")
    (wt / "f").unlink()
    (wt / "x.log").write_text("ignored? no: no .gitignore, so taken\n")
    index = admin_dir(repo, wt) / "index"
    before = index.read_bytes()
    with staged_snapshot(repo, wt) as snap:
        tree = snap.tree
        commit = git(wt, "commit-tree", tree, "-p", a, "-m", "patch")
        pin_head(repo, wt, commit)
        assert index.read_bytes() == before  # not staged until asked
        snap.stage()
    assert git(wt, "write-tree") == tree  # the index is what git add -A stages
    _exactly_at(wt, commit)
    assert clean_at(admin_dir(repo, wt), wt, commit)


def test_an_unstaged_snapshot_leaves_the_index_alone(slot) -> None:
    repo, wt, _, _ = slot
    index = admin_dir(repo, wt) / "index"
    before = index.read_bytes()
    (wt / "keep.txt").write_text("tool\n")
    snapshot_tree(repo, wt)
    assert index.read_bytes() == before
    assert sp.run(["git", "diff", "--quiet"], cwd=wt).returncode == 1


def test_index_paths_read_long_and_non_ascii_names_as_git_lists_them(slot) -> None:
    repo, wt, _, _ = slot
    admin = admin_dir(repo, wt)
    (wt / "é dir").mkdir()
    (wt / "é dir" / "ü.txt").write_text("u\n")
    git(wt, "add", "-A")
    blob = git(wt, "hash-object", "-w", "--stdin", input="long\n")
    long_name = "/".join(["n" * 200] * 25)  # past the 0xFFF a name's length field holds
    git(wt, "update-index", "--add", "--cacheinfo", f"100644,{blob},{long_name}")
    listed = set(git(wt, "ls-files", "-z").split("\0")) - {""}
    assert long_name in listed and "é dir/ü.txt" in listed
    assert index_paths(admin) == listed
    # An entry whose recorded name length is one short of its name: not read as git would
    # surely read it, so git decides (None), whatever it makes of it.
    data = bytearray((admin / "index").read_bytes())
    at = data.index("é dir/ü.txt".encode())
    data[at - 1] -= 1  # the low byte of the entry's flags: its name length
    (admin / "index").write_bytes(bytes(data))
    assert index_paths(admin) is None


def _git_head(admin: Path) -> str | None:
    """What git reads as the commit of a worktree's HEAD from its admin dir (as
    ``worktree_head`` reads it: never by discovery from inside the worktree)."""
    proc = sp.run(["git", "--git-dir", str(admin), "rev-parse", "--verify", "--quiet",
                   "HEAD^{commit}"], capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def test_worktree_head_reads_a_detached_head_as_git_does(slot) -> None:
    repo, wt, a, b = slot
    admin = admin_dir(repo, wt)
    assert worktree_head(repo, wt) == a == _git_head(admin)
    assert git(wt, "rev-parse", "--absolute-git-dir") == str(admin)
    git(repo.workdir, "tag", "-a", "-m", "annotated", "t", b)
    tag = git(repo.workdir, "rev-parse", "t")
    heads = {
        "a commit": b + "\n",
        "an annotated tag's object": tag + "\n",  # git peels it to the commit
        "a missing object": "1" * 40 + "\n",
        "a branch": "ref: refs/heads/main\n",
    }
    for what, text in heads.items():
        (admin / "HEAD").write_text(text)
        assert worktree_head(repo, wt) == _git_head(admin), what
    (admin / "HEAD").unlink()
    (admin / "elsewhere").write_text(b + "\n")
    (admin / "HEAD").symlink_to(admin / "elsewhere")  # not read as a plain file
    assert worktree_head(repo, wt) == _git_head(admin)


def test_a_snapshot_after_a_prune_writes_the_pruned_blobs_again(slot) -> None:
    """Until ``stage()`` the index is the one the tool left: a prune that takes the new blob
    before the patch is pinned cannot make the next snapshot trust an entry naming it."""
    repo, wt, _, _ = slot
    (wt / "keep.txt").write_text("a blob nothing names yet\n")
    with staged_snapshot(repo, wt) as snap:
        blob = git(wt, "rev-parse", f"{snap.tree}:keep.txt")
        git(repo.workdir, "prune", "--expire=now")
        assert sp.run(["git", "cat-file", "-e", blob], cwd=wt).returncode != 0
        again = snapshot_tree(repo, wt)
    assert again == snap.tree
    assert sp.run(["git", "cat-file", "-e", blob], cwd=wt).returncode == 0
