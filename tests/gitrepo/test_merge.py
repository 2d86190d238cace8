"""In-memory 3-way tree merges and change lists, checked against the git CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.merge import Change, changed_paths, diff_stat, is_ancestor, merge_trees
from uet_git.gitrepo.repo import GitError, Repo

TEXT = "".join(f"line {i}\n" for i in range(1, 21))


@pytest.fixture
def r(tmp_path: Path):
    path = make_repo(tmp_path / "repo", {"f.txt": TEXT, "other.txt": "o\n", "bin.dat": "x"})
    repo = Repo.open(path)
    return path, repo, repo.rev_parse("HEAD")


def commit(repo: Repo, parent: str, files: dict) -> str:
    tree = objects.build_tree(repo, parent, files)
    return objects.make_commit(repo, tree, [parent], "change")


def show(path: Path, tree: str, name: str) -> str:
    return git(path, "cat-file", "blob", f"{tree}:{name}")


def test_clean_three_way_merge(r) -> None:
    path, repo, base = r
    ours = commit(repo, base, {"f.txt": TEXT.replace("line 2\n", "line 2 ours\n").encode(),
                               "new_ours.txt": b"n\n"})
    theirs = commit(repo, base, {"f.txt": TEXT.replace("line 19\n", "line 19 theirs\n").encode(),
                                 "other.txt": None})
    res = merge_trees(repo, base, ours, theirs)
    assert res.clean and res.conflicts == []
    merged = show(path, res.tree, "f.txt")
    assert "line 2 ours" in merged and "line 19 theirs" in merged
    names = git(path, "ls-tree", "-r", "--name-only", res.tree).split()
    assert sorted(names) == ["bin.dat", "f.txt", "new_ours.txt"]
    # the same as git's own merge of the two commits
    assert res.tree == git(path, "merge-tree", "--write-tree", ours, theirs)
    # trees work as arguments too
    assert merge_trees(repo, objects.commit_tree(repo, base), objects.commit_tree(repo, ours),
                       objects.commit_tree(repo, theirs)).tree == res.tree


def test_same_line_conflict(r) -> None:
    _path, repo, base = r
    ours = commit(repo, base, {"f.txt": TEXT.replace("line 5\n", "A\n").encode()})
    theirs = commit(repo, base, {"f.txt": TEXT.replace("line 5\n", "B\n").encode(),
                                 "other.txt": b"clean change\n"})
    res = merge_trees(repo, base, ours, theirs)
    assert res.tree is None and not res.clean
    assert res.conflicts == ["f.txt"]


def test_add_add(r) -> None:
    _path, repo, base = r
    ours = commit(repo, base, {"n.txt": b"one\n"})
    theirs = commit(repo, base, {"n.txt": b"two\n"})
    assert merge_trees(repo, base, ours, theirs).conflicts == ["n.txt"]
    same = commit(repo, base, {"n.txt": b"one\n"})
    assert merge_trees(repo, base, ours, same).clean
    # no common ancestor: everything is an add
    assert merge_trees(repo, None, ours, theirs).conflicts == ["n.txt"]


def test_delete_modify(r) -> None:
    _path, repo, base = r
    ours = commit(repo, base, {"other.txt": None})
    theirs = commit(repo, base, {"other.txt": b"modified\n"})
    assert merge_trees(repo, base, ours, theirs).conflicts == ["other.txt"]
    assert merge_trees(repo, base, theirs, ours).conflicts == ["other.txt"]


def test_binary_conflict(r) -> None:
    path, repo, base = r
    ours = commit(repo, base, {"bin.dat": b"\x00\x01ours"})
    theirs = commit(repo, base, {"bin.dat": b"\x00\x02theirs"})
    assert merge_trees(repo, base, ours, theirs).conflicts == ["bin.dat"]
    one_side = commit(repo, base, {"f.txt": b"x\n"})
    res = merge_trees(repo, base, one_side, ours)
    assert res.clean
    ours_bin = git(path, "rev-parse", f"{ours}:bin.dat")
    assert git(path, "rev-parse", f"{res.tree}:bin.dat") == ours_bin


def test_mode_change_merges_with_a_content_change(r) -> None:
    path, repo, base = r
    blob = git(path, "rev-parse", f"{base}:other.txt")
    ours = commit(repo, base, {"other.txt": objects.Entry(blob, objects.FILEMODE_EXEC)})
    theirs = commit(repo, base, {"other.txt": b"new content\n"})
    res = merge_trees(repo, base, ours, theirs)
    assert res.clean
    line = git(path, "ls-tree", res.tree, "other.txt")
    assert line.startswith("100755 blob")
    assert show(path, res.tree, "other.txt") == "new content"
    # a mode change against a different mode change conflicts
    link = commit(repo, base, {"other.txt": objects.Entry(blob, objects.FILEMODE_LINK)})
    assert not merge_trees(repo, base, ours, link).clean


def test_changed_paths_like_numstat(r) -> None:
    path, repo, base = r
    blob = git(path, "rev-parse", f"{base}:other.txt")
    new = commit(repo, base, {
        "f.txt": None,
        "g.txt": TEXT.replace("line 3\n", "LINE 3\n").encode(),  # a rename with an edit
        "bin.dat": b"\x00\x01\x02binary",
        "added.txt": b"a\nb\n",
        "other.txt": objects.Entry(blob, objects.FILEMODE_EXEC),
    })
    changes = changed_paths(repo, base, new)
    by_path = {c.path: c for c in changes}
    assert by_path["g.txt"] == Change("R", "g.txt", "f.txt", 1, 1)
    assert by_path["bin.dat"] == Change("M", "bin.dat", None, 0, 0, binary=True)
    assert by_path["added.txt"] == Change("A", "added.txt", None, 2, 0)
    assert by_path["other.txt"] == Change("M", "other.txt", None, 0, 0)
    assert [c.path for c in changes] == sorted(by_path)
    numstat = git(path, "diff", "--numstat", "-M", base, new)
    for line in numstat.splitlines():
        add, rem, name = line.split("\t")
        name = name.split(" => ")[-1].rstrip("}")
        c = by_path[name if name in by_path else "g.txt"]
        assert (str(c.lines_added), str(c.lines_removed)) == (
            ("0", "0") if add == "-" else (add, rem))
    gone = commit(repo, base, {"other.txt": None})
    assert changed_paths(repo, base, gone) == [Change("D", "other.txt", None, 0, 1)]
    assert {c.path for c in changed_paths(repo, None, base)} == {"f.txt", "other.txt", "bin.dat"}
    link = commit(repo, base, {"other.txt": objects.Entry(blob, objects.FILEMODE_LINK)})
    assert changed_paths(repo, base, link)[0].status == "T"
    assert changed_paths(repo, base, base) == []


def test_diff_stat_and_ancestry(r) -> None:
    _path, repo, base = r
    a = commit(repo, base, {"f.txt": b"short\n", "z.txt": b"z\n"})
    b = commit(repo, a, {"z.txt": None})
    stat = diff_stat(repo, base, a)
    assert "f.txt" in stat and "z.txt" in stat and "2 files changed" in stat
    assert "create mode 100644 z.txt" in stat
    assert "3 files changed" in diff_stat(repo, None, base)
    assert is_ancestor(repo, base, b) and is_ancestor(repo, a, b) and is_ancestor(repo, b, b)
    assert not is_ancestor(repo, b, base)
    with pytest.raises(GitError, match="does not exist"):
        is_ancestor(repo, "1" * 40, base)


def test_rename_on_one_side_follows_an_edit_on_the_other(r) -> None:
    path, repo, base = r
    ours = commit(repo, base, {"f.txt": None, "moved/f.txt": TEXT.encode()})
    theirs = commit(repo, base, {"f.txt": TEXT.replace("line 7\n", "line 7 edited\n").encode()})
    res = merge_trees(repo, base, ours, theirs)
    assert res.clean
    names = git(path, "ls-tree", "-r", "--name-only", res.tree).split()
    assert "f.txt" not in names and "moved/f.txt" in names
    assert "line 7 edited" in show(path, res.tree, "moved/f.txt")
    # renamed differently on both sides: a conflict naming the paths involved
    other = commit(repo, base, {"f.txt": None, "elsewhere.txt": TEXT.encode()})
    conflict = merge_trees(repo, base, ours, other)
    assert not conflict.clean
    assert conflict.conflicts == ["elsewhere.txt", "f.txt", "moved/f.txt"]
