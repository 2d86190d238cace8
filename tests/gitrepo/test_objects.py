"""Blobs, nested trees from a base + changes, commits with git's identity rules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import GitError, Repo


@pytest.fixture
def r(tmp_path: Path):
    path = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/a.py": "a\n",
                                         "src/pkg/b.py": "b\n", "docs/x.md": "x\n"})
    repo = Repo.open(path)
    return path, repo, repo.rev_parse("HEAD")


def ls(path: Path, tree: str) -> dict[str, tuple[str, str]]:
    out = git(path, "ls-tree", "-r", tree)
    res = {}
    for line in out.splitlines():
        meta, name = line.split("\t")
        mode, _, oid = meta.split()
        res[name] = (mode, oid)
    return res


def test_blob_roundtrip(r) -> None:
    path, repo, _head = r
    oid = objects.write_blob(repo, b"\x00binary\xff")
    assert len(oid) == 40
    raw = subprocess.run(["git", "cat-file", "blob", oid], cwd=path, capture_output=True).stdout
    assert raw == b"\x00binary\xff"


def test_build_tree_adds_modifies_deletes_nested(r) -> None:
    path, repo, head = r
    exe = objects.write_blob(repo, b"#!/bin/sh\n")
    tree = objects.build_tree(repo, head, {
        "src/a.py": b"A\n",  # modify
        "src/pkg/b.py": None,  # delete: src/pkg becomes empty and disappears
        "new/deep/er/c.txt": b"c\n",  # add nested
        "run.sh": objects.Entry(exe, objects.FILEMODE_EXEC),
        "docs/missing": None,  # deleting a missing path is a no-op
    })
    got = ls(path, tree)
    assert set(got) == {"README.md", "src/a.py", "docs/x.md", "new/deep/er/c.txt", "run.sh"}
    assert got["run.sh"] == ("100755", exe)
    assert git(path, "cat-file", "blob", f"{tree}:src/a.py") == "A"
    assert "src/pkg" not in git(path, "ls-tree", "-r", "-t", "--name-only", tree).split()
    # Unchanged subtrees are shared, not rewritten.
    assert git(path, "rev-parse", f"{tree}:docs") == git(path, "rev-parse", f"{head}:docs")
    assert objects.commit_tree(repo, head) == git(path, "rev-parse", f"{head}^{{tree}}")
    assert objects.commit_tree(repo, tree) == tree
    # file <-> directory replacement
    t2 = objects.build_tree(repo, tree, {"docs": b"now a file", "README.md/inner": b"x"})
    got2 = ls(path, t2)
    assert "docs" in got2 and "README.md/inner" in got2 and "docs/x.md" not in got2
    subprocess.run(["git", "fsck", "--strict", "--no-dangling"], cwd=path, check=True,
                   capture_output=True)


def test_build_tree_from_nothing_and_to_nothing(r) -> None:
    path, repo, _head = r
    assert objects.build_tree(repo, None, {}) == objects.EMPTY_TREE
    t = objects.build_tree(repo, None, {"a/b": b"1"})
    assert ls(path, t) == {"a/b": ("100644", git(path, "hash-object", "--stdin", input="1"))}
    assert objects.build_tree(repo, t, {"a/b": None}) == objects.EMPTY_TREE
    assert git(path, "cat-file", "-t", objects.EMPTY_TREE) == "tree"


@pytest.mark.parametrize("bad", ["/abs", "a//b", "a/../b", "./a", ".git/config", "a/.GIT/x",
                                 "trailing/"])
def test_bad_paths_are_refused(r, bad: str) -> None:
    _path, repo, head = r
    with pytest.raises(GitError, match="bad path"):
        objects.build_tree(repo, head, {bad: b"x"})


def test_file_and_directory_at_once_is_refused(r) -> None:
    _path, repo, head = r
    with pytest.raises(GitError, match=r"both a file and a directory|also a file"):
        objects.build_tree(repo, head, {"a/b": b"1", "a": b"2"})
    with pytest.raises(GitError, match=r"both a file and a directory|also a file"):
        objects.build_tree(repo, head, {"a": b"2", "a/b": b"1"})


def test_read_blob(r) -> None:
    _path, repo, head = r
    assert objects.read_blob(repo, head, "src/pkg/b.py") == b"b\n"
    tree = objects.commit_tree(repo, head)
    assert objects.read_blob(repo, tree, "README.md") == b"hi\n"
    assert objects.read_blob(repo, head, "src") is None  # a directory
    assert objects.read_blob(repo, head, "nope/x") is None
    with pytest.raises(GitError, match="does not exist"):
        objects.read_blob(repo, "1" * 40, "x")
    blob = objects.write_blob(repo, b"x")
    with pytest.raises(GitError, match="not a commit or a tree"):
        objects.commit_tree(repo, blob)


def test_build_tree_touches_only_changed_paths(r) -> None:
    path, repo, head = r
    # A wide base: 2,000 directories. Changing one path rewrites only the trees on its way.
    files = {f"d{i:04}/f.txt": f"{i}".encode() for i in range(2000)}
    base = objects.build_tree(repo, head, files)
    before = int(git(path, "count-objects").split()[0])
    t = objects.build_tree(repo, base, {"d0007/f.txt": b"changed", "d0007/g/new": b"n"})
    after = int(git(path, "count-objects").split()[0])
    assert after - before == 5  # 2 blobs + d0007/g + d0007 + root
    assert git(path, "rev-parse", f"{t}:d0008") == git(path, "rev-parse", f"{base}:d0008")


def test_commit_identity_from_env(r, monkeypatch: pytest.MonkeyPatch) -> None:
    path, repo, head = r
    monkeypatch.setenv("GIT_AUTHOR_DATE", "@1700000000 +0130")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2024-01-02T03:04:05+02:00")
    c = objects.make_commit(repo, objects.commit_tree(repo, head), [head], "msg\n\nbody")
    fmt = "%an|%ae|%at|%ai|%cn|%ce|%ci|%P|%B"
    out = git(path, "log", "-1", f"--format={fmt}", c)
    assert out.startswith("Test Author|author@example.com|1700000000|2023-11-14 23:43:20 +0130|"
                          "Test Committer|committer@example.com|2024-01-02 03:04:05 +0200|"
                          f"{head}|msg")
    assert out.endswith("body")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "yesterday-ish")
    with pytest.raises(GitError, match="GIT_AUTHOR_DATE"):
        objects.make_commit(repo, objects.commit_tree(repo, head), [head], "m")


def test_commit_identity_from_config_then_default(r, monkeypatch: pytest.MonkeyPatch) -> None:
    path, repo, head = r
    for k in ("NAME", "EMAIL"):
        monkeypatch.delenv(f"GIT_AUTHOR_{k}", raising=False)
        monkeypatch.delenv(f"GIT_COMMITTER_{k}", raising=False)
    tree = objects.commit_tree(repo, head)
    c = objects.make_commit(Repo.open(path), tree, [], "root")
    assert git(path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", c) == \
        "uet <uet@localhost>|uet <uet@localhost>"
    git(path, "config", "user.name", "Cfg User")
    git(path, "config", "user.email", "cfg@example.com")
    c = objects.make_commit(Repo.open(path), tree, [], "root")
    assert git(path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", c) == \
        "Cfg User <cfg@example.com>|Cfg User <cfg@example.com>"
    git(path, "config", "committer.name", "Cfg Committer")
    c = objects.make_commit(Repo.open(path), tree, [], "root")
    assert git(path, "log", "-1", "--format=%cn", c) == "Cfg Committer"


def _ident(repo: Repo, role: str) -> str:
    p = objects.identity(repo, role)
    return f"{p.name} <{p.email}>"


def _git_ident(path: Path, role: str) -> str:
    return git(path, "var", f"GIT_{role.upper()}_IDENT").rpartition(">")[0] + ">"


def test_identity_is_gits_answer_as_env_and_config_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    glob = tmp_path / "global.gitconfig"
    glob.write_text("[user]\n\tname = Global User\n\temail = global@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(glob))
    for k in ("NAME", "EMAIL"):
        monkeypatch.delenv(f"GIT_AUTHOR_{k}", raising=False)
        monkeypatch.delenv(f"GIT_COMMITTER_{k}", raising=False)
    repo = Repo.open(path)

    def same() -> None:
        for role in ("author", "committer"):
            theirs = _git_ident(path, role)  # asked once: nothing changes between the reads
            assert _ident(repo, role) == theirs
            assert _ident(Repo.open(path), role) == theirs

    same()
    assert _ident(repo, "author") == "Global User <global@example.com>"
    git(path, "config", "user.name", "Repo User")  # the repository's config changes
    same()
    glob.write_text("[user]\n\tname = Global User\n\temail = other@example.com\n")
    same()
    assert _ident(repo, "committer") == "Repo User <other@example.com>"
    # One variable from the environment, the other from config; then both from it.
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Env Author")
    same()
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "env@example.com")
    same()
    # Command-scope config in the environment.
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "committer.email")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "count0@example.com")
    same()
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "count1@example.com")  # same count, new value
    same()
    assert _ident(repo, "committer") == "Repo User <count1@example.com>"
    for k in ("COUNT", "KEY_0", "VALUE_0"):
        monkeypatch.delenv(f"GIT_CONFIG_{k}")
    # An included file: it can change while no file git names directly does.
    inc = tmp_path / "identity.inc"
    inc.write_text("[committer]\n\tname = Included Committer\n")
    git(path, "config", "include.path", str(inc))
    same()
    assert _ident(repo, "committer") == "Included Committer <other@example.com>"
    inc.write_text("[committer]\n\tname = Changed Include\n")
    same()
    assert _ident(repo, "committer") == "Changed Include <other@example.com>"


def test_build_tree_takes_names_that_are_not_utf8(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "d/z.txt": "z\n"})
    repo = Repo.open(path)
    head = repo.rev_parse("HEAD")
    assert head is not None
    name = os.fsdecode(b"caf\xe9.txt")  # as os.listdir and pygit2 give it
    tree = objects.build_tree(repo, head, {name: b"latin-1\n", f"d/{name}": b"deep\n",
                                           f"new-{name}/x": b"dir\n", "b.txt": b"b\n"})
    git(path, "fsck", "--strict", "--no-dangling")
    listing = subprocess.run(["git", "ls-tree", "-r", "-z", "--name-only", tree], cwd=path,
                             capture_output=True, check=True).stdout.split(b"\0")
    assert sorted(filter(None, listing)) == sorted(
        [b"a.txt", b"b.txt", b"caf\xe9.txt", b"d/caf\xe9.txt", b"d/z.txt", b"new-caf\xe9.txt/x"])
    assert objects.read_blob(repo, tree, name) == b"latin-1\n"
    # Changed again and deleted through the same names.
    again = objects.build_tree(repo, tree, {name: b"second\n", f"d/{name}": None})
    assert objects.read_blob(repo, again, name) == b"second\n"
    assert objects.read_blob(repo, again, f"d/{name}") is None
    git(path, "fsck", "--strict", "--no-dangling")
    mktree = subprocess.run(["git", "ls-tree", "-z", again], cwd=path, capture_output=True,
                            check=True).stdout
    # git writes the same tree for the same entries (the order is git's).
    assert subprocess.run(["git", "mktree", "-z"], cwd=path, input=mktree, capture_output=True,
                          check=True).stdout.decode().strip() == again
