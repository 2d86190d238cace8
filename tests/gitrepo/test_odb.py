"""Typed object access (odb.py) checked against the git CLI on real repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo
from uet_git.errors import EXIT_WORK_FAILED
from uet_git.gitrepo import objects, odb
from uet_git.gitrepo.objects import Person
from uet_git.gitrepo.repo import Repo


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``r``'s repository, built once per module."""
    path = make_repo(tmp_path_factory.mktemp("odb") / "repo",
                     {"a.txt": "a\n", "d/b.txt": "b\n", "d/e/c.txt": "c\n"})
    (path / "run.sh").write_text("#!/bin/sh\n")
    (path / "run.sh").chmod(0o755)
    os.symlink("a.txt", path / "link")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "second\n\nbody line\n\nKey: v")
    return path


@pytest.fixture
def r(_template: Path, tmp_path: Path) -> tuple[Path, Repo]:
    """A copy of a repository of two commits: files, a subdirectory, an executable and a
    symbolic link."""
    path = tmp_path / "repo"
    copy_repo(_template, path)
    return path, Repo.open(path)


def test_get_commit_matches_git(r) -> None:
    path, repo = r
    c = odb.get_commit(repo, "HEAD")
    assert c.oid == git(path, "rev-parse", "HEAD")
    assert c.tree == git(path, "rev-parse", "HEAD^{tree}")
    assert c.parents == (git(path, "rev-parse", "HEAD~1"),)
    assert c.parent == c.parents[0]
    assert c.subject == "second"
    assert c.message == git(path, "log", "-1", "--format=%B") + "\n"
    assert c.author.name == git(path, "log", "-1", "--format=%an")
    assert c.author.email == git(path, "log", "-1", "--format=%ae")
    assert c.commit_time == int(git(path, "log", "-1", "--format=%ct"))
    assert odb.get_commit(repo, c.oid) == c
    root = odb.get_commit(repo, "HEAD~1")
    assert root.parent is None and root.parents == ()


def test_missing_and_wrong_type_objects(r) -> None:
    path, repo = r
    ghost = "1" * 40
    with pytest.raises(odb.MissingObject) as err:
        odb.get_commit(repo, ghost, what="patch of w1")
    assert str(err.value) == "patch of w1: object 111111111111 is missing from the repository"
    assert err.value.exit_code == EXIT_WORK_FAILED
    blob = git(path, "rev-parse", "HEAD:a.txt")
    with pytest.raises(odb.MissingObject, match=blob[:12]):
        odb.get_commit(repo, blob)
    with pytest.raises(odb.MissingObject):
        odb.tree_of(repo, blob)
    with pytest.raises(odb.MissingObject):
        odb.get_commit(repo, "refs/heads/nope")
    long_name = "b" * 20 + "-" * 20  # a 40-character branch name is a name, not an id
    git(path, "branch", long_name)
    assert odb.get_commit(repo, long_name).oid == repo.rev_parse("HEAD")
    assert not odb.has_object(repo, ghost)
    assert not odb.has_object(repo, "not-an-oid")
    assert odb.has_object(repo, blob)


def test_tree_of_and_read_blob(r) -> None:
    path, repo = r
    tree = git(path, "rev-parse", "HEAD^{tree}")
    assert odb.tree_of(repo, "HEAD") == tree
    assert odb.tree_of(repo, tree) == tree
    assert odb.read_blob(repo, repo.rev_parse("HEAD"), "d/e/c.txt") == b"c\n"
    assert odb.read_blob(repo, tree, "missing") is None
    assert odb.read_blob(repo, tree, "d") is None


def test_list_tree_and_walk_tree_match_ls_tree(r) -> None:
    path, repo = r
    top = odb.list_tree(repo, "HEAD")
    want = [ln.split("\t")[1] for ln in git(path, "ls-tree", "HEAD").splitlines()]
    assert [e.name for e in top] == want
    kinds = {e.name: (e.kind, e.mode) for e in top}
    assert kinds["d"] == ("tree", 0o40000)
    assert kinds["run.sh"] == ("blob", 0o100755)
    assert kinds["link"] == ("blob", 0o120000)
    sub = odb.list_tree(repo, "HEAD", "d")
    assert [(e.name, e.path) for e in sub] == [("b.txt", "d/b.txt"), ("e", "d/e")]
    assert odb.list_tree(repo, "HEAD", "nope") == []
    assert odb.list_tree(repo, "HEAD", "a.txt") == []
    walked = list(odb.walk_tree(repo, "HEAD"))
    assert [e.path for e in walked] == git(path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert all(e.oid == git(path, "rev-parse", f"HEAD:{e.path}") for e in walked)
    assert [e.path for e in odb.walk_tree(repo, "HEAD", "d")] == ["d/b.txt", "d/e/c.txt"]


def test_walk_commits_newest_first_and_first_parent(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo")
    git(path, "checkout", "-q", "-b", "side")
    git(path, "commit", "-q", "--allow-empty", "-m", "side")
    git(path, "checkout", "-q", "main")
    git(path, "commit", "-q", "--allow-empty", "-m", "main")
    git(path, "merge", "-q", "--no-ff", "-m", "merge", "side")
    repo = Repo.open(path)
    walked = list(odb.walk_commits(repo, "HEAD"))
    every = [c.oid for c in walked]
    assert every[0] == repo.rev_parse("HEAD")
    assert sorted(every) == sorted(git(path, "rev-list", "HEAD").split())
    for i, c in enumerate(walked):  # topological: every parent comes after its child
        assert all(every.index(p) > i for p in c.parents)
    first = [c.oid for c in odb.walk_commits(repo, "HEAD", first_parent=True)]
    assert first == git(path, "rev-list", "--first-parent", "HEAD").split()
    assert len(first) == 3 and len(every) == 4
    side = [c.subject for c in odb.walk_commits(repo, "HEAD", exclude=["main~1"])]
    assert side == ["merge", "side"]
    assert list(odb.walk_commits(repo, "HEAD~1", exclude=["HEAD"])) == []


def test_make_commit_accepts_person(r) -> None:
    path, repo = r
    who = Person("Ada", "ada@example.com", 1_700_000_000, 120)
    c = objects.make_commit(repo, odb.tree_of(repo, "HEAD"), [repo.rev_parse("HEAD")], "m",
                            author=who, committer=who)
    assert git(path, "log", "-1", "--format=%an <%ae> %at %ai|%cn", c) == \
        "Ada <ada@example.com> 1700000000 2023-11-15 00:13:20 +0200|Ada"
    info = odb.get_commit(repo, c)
    assert info.author == who and info.committer == who
    # A CommitInfo's author goes back in as is (what rebase does to keep it).
    again = objects.make_commit(repo, info.tree, [c], "again", author=info.author)
    assert odb.get_commit(repo, again).author == who


def test_missing_in_tree_names_the_paths_whose_objects_are_gone(r) -> None:
    path, repo = r
    assert odb.missing_in_tree(repo, "HEAD") == []
    blob = git(path, "rev-parse", "HEAD:a.txt")
    sub = git(path, "rev-parse", "HEAD:d/e")
    for oid in (blob, sub):  # loose objects (make_repo never packs)
        (path / ".git" / "objects" / oid[:2] / oid[2:]).unlink()
    fresh = Repo.open(path)  # a new handle: no cached objects
    assert odb.missing_in_tree(fresh, "HEAD") == ["a.txt", "d/e"]
    with pytest.raises(odb.MissingObject, match=f"tree d/e: object {sub[:12]}"):
        list(odb.walk_tree(fresh, "HEAD"))
    assert odb.missing_in_tree(fresh, "1" * 40) == ["(tree)"]


def test_resolve_and_read_raw(r) -> None:
    path, repo = r
    tree = git(path, "rev-parse", "HEAD^{tree}")
    assert odb.resolve(repo, "HEAD") == git(path, "rev-parse", "HEAD")
    assert odb.resolve(repo, "HEAD^{tree}") == tree
    with pytest.raises(odb.MissingObject, match="base: object nope"):
        odb.resolve(repo, "nope", what="base")
    kind, data = odb.read_raw(repo, tree) or ("", b"")
    assert kind == "tree"
    assert data == subprocess.run(["git", "cat-file", "tree", tree], cwd=path,
                                  capture_output=True, check=True).stdout
    assert odb.read_raw(repo, odb.resolve(repo, "HEAD"))[0] == "commit"  # type: ignore[index]
    assert odb.read_raw(repo, "1" * 40) is None
    assert odb.read_raw(repo, "HEAD") is None
    # A tree git itself refuses (a duplicate entry) is still readable as it is.
    blob = git(path, "rev-parse", "HEAD:a.txt")
    bad = b"".join(b"100644 same\0" + bytes.fromhex(blob) for _ in range(2))
    oid = subprocess.run(["git", "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
                         cwd=path, input=bad, capture_output=True, check=True).stdout.decode()
    assert odb.read_raw(repo, oid.strip()) == ("tree", bad)


def _loose_on_disk(path: Path, oid: str) -> bool:
    return (path / ".git" / "objects" / oid[:2] / oid[2:]).is_file()


def test_not_loose_agrees_with_the_object_files_and_git(r) -> None:
    path, repo = r
    new = objects.write_blob(repo, b"fresh blob\n")
    head = git(path, "rev-parse", "HEAD")
    ghost = "1" * 40
    assert git(path, "cat-file", "-t", new) == "blob"
    assert odb.not_loose(repo, [new, head, ghost]) == [ghost]
    # Packed (git gc): git still has every object, none of them is loose any more.
    git(path, "gc", "-q")
    assert not _loose_on_disk(path, head)
    assert git(path, "cat-file", "-t", head) == "commit"
    assert odb.not_loose(repo, [head]) == [head]
    # A loose object another process deletes is seen gone at once, whatever libgit2 cached.
    other = objects.write_blob(repo, b"deleted behind our back\n")
    assert odb.has_object(repo, other) and odb.not_loose(repo, [other]) == []
    (path / ".git" / "objects" / other[:2] / other[2:]).unlink()
    assert odb.not_loose(repo, [other]) == [other]
    assert git(path, "cat-file", "-e", other, check=False) == ""


def test_entry_ids_match_rev_parse(r) -> None:
    path, repo = r
    paths = ["a.txt", "d", "d/e", "d/e/c.txt", "link", "nope", "d/nope"]
    got = odb.entry_ids(repo, "HEAD", paths)
    want = {p: git(path, "rev-parse", f"HEAD:{p}") for p in paths
            if git(path, "rev-parse", "-q", "--verify", f"HEAD:{p}", check=False)}
    assert got == want and "nope" not in got
    # A tree on the path gone from the database: said so, not taken as absent.
    sub = want["d/e"]
    (path / ".git" / "objects" / sub[:2] / sub[2:]).unlink()
    with pytest.raises(odb.MissingObject):
        odb.entry_ids(Repo.open(path), "HEAD", ["d/e/c.txt"])


def _rev_list_objects(path: Path, tip: str, base: str) -> set[str]:
    return {line.split()[0] for line in
            git(path, "rev-list", "--objects", tip, "--not", base).splitlines()}


def test_added_objects_are_what_rev_list_says_a_commit_adds(r) -> None:
    path, repo = r
    base = git(path, "rev-parse", "HEAD")
    (path / "d" / "e" / "c.txt").write_text("changed deep\n")
    (path / "new" / "sub").mkdir(parents=True)
    (path / "new" / "sub" / "n.txt").write_text("new file\n")
    (path / "a.txt").unlink()
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "third")
    head = git(path, "rev-parse", "HEAD")
    # Every object here has new content, so the path-wise difference is rev-list's set.
    want = _rev_list_objects(path, head, base)
    assert set(odb.added_objects(repo, head, base)) == want
    tree = git(path, "rev-parse", "HEAD^{tree}")
    assert set(odb.added_objects(repo, tree, base)) == want - {head}
    assert odb.added_objects(repo, base, base) == [base]
    assert set(odb.added_objects(repo, base, "HEAD~2")) == \
        _rev_list_objects(path, base, "HEAD~2")
    # A subtree the walk needs is gone: an error, never a short list.
    sub = git(path, "rev-parse", "HEAD:new/sub")
    (path / ".git" / "objects" / sub[:2] / sub[2:]).unlink()
    with pytest.raises(odb.MissingObject):
        odb.added_objects(Repo.open(path), head, base)
