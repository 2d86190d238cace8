"""merge.rebase (the one candidate maker), rev_list, count_commits and diff_bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects, odb
from uet_git.gitrepo.merge import RebaseResult, count_commits, diff_bytes, rebase, rev_list
from uet_git.gitrepo.objects import Person
from uet_git.gitrepo.repo import Repo

TEXT = "".join(f"line {i}\n" for i in range(1, 21))
ADA = Person("Ada", "ada@example.com", 1_600_000_000, 60)


@pytest.fixture
def r(tmp_path: Path) -> tuple[Path, Repo, str]:
    path = make_repo(tmp_path / "repo", {"f.txt": TEXT, "g.txt": "g\n"})
    repo = Repo.open(path)
    return path, repo, repo.rev_parse("HEAD")


def change(repo: Repo, parent: str, files: dict, msg: str = "change\n\nKey: v\n") -> str:
    tree = objects.build_tree(repo, parent, files)
    return objects.make_commit(repo, tree, [parent], msg, author=ADA)


def test_rebase_applies_the_change_onto_the_new_tip(r) -> None:
    path, repo, base = r
    patch = change(repo, base, {"f.txt": TEXT.replace("line 2\n", "line 2 patch\n").encode()})
    onto = change(repo, base, {"f.txt": TEXT.replace("line 19\n", "line 19 tip\n").encode(),
                               "new.txt": b"n\n"}, "tip")
    res = rebase(repo, patch, onto)
    assert res.conflicts == [] and not res.already_applied and res.commit is not None
    c = odb.get_commit(repo, res.commit)
    assert c.parents == (onto,)
    assert c.message == "change\n\nKey: v\n" and c.author == ADA
    text = git(path, "cat-file", "blob", f"{res.commit}:f.txt")
    assert "line 2 patch" in text and "line 19 tip" in text
    assert git(path, "cat-file", "blob", f"{res.commit}:new.txt") == "n"
    # What git's own cherry-pick makes of it.
    git(path, "checkout", "-q", "--detach", onto)
    git(path, "cherry-pick", patch)
    assert c.tree == git(path, "rev-parse", "HEAD^{tree}")


def test_rebase_onto_its_own_parent_is_the_commit_itself(r) -> None:
    _, repo, base = r
    patch = change(repo, base, {"g.txt": b"g2\n"})
    assert rebase(repo, patch, base) == RebaseResult(patch, [], False)


def test_rebase_conflict_lists_paths(r) -> None:
    _, repo, base = r
    patch = change(repo, base, {"f.txt": TEXT.replace("line 5\n", "five A\n").encode()})
    onto = change(repo, base, {"f.txt": TEXT.replace("line 5\n", "five B\n").encode()})
    assert rebase(repo, patch, onto) == RebaseResult(None, ["f.txt"], False)


def test_rebase_of_a_change_already_in_onto(r) -> None:
    _, repo, base = r
    files = {"g.txt": b"same change\n"}
    patch = change(repo, base, files)
    onto = change(repo, base, files, "the same change landed another way")
    res = rebase(repo, patch, onto)
    assert res == RebaseResult(None, [], True)


def test_rebase_of_a_root_commit(r) -> None:
    _, repo, base = r
    root = objects.make_commit(repo, objects.build_tree(repo, None, {"r.txt": b"r\n"}), [],
                               "root")
    res = rebase(repo, root, base)
    assert res.commit is not None
    assert objects.read_blob(repo, res.commit, "r.txt") == b"r\n"
    assert objects.read_blob(repo, res.commit, "g.txt") == b"g\n"


def test_rebase_of_a_missing_commit(r) -> None:
    _, repo, base = r
    with pytest.raises(odb.MissingObject, match="222222222222"):
        rebase(repo, "2" * 40, base)


def test_rev_list_and_count_commits(r) -> None:
    _, repo, base = r
    a = change(repo, base, {"g.txt": b"1\n"})
    b = change(repo, a, {"g.txt": b"2\n"})
    assert rev_list(repo, "--topo-order", b, f"^{base}") == [b, a]
    assert rev_list(repo, b, "--not", a) == [b]
    assert count_commits(repo, base, b) == 2
    assert count_commits(repo, b, base) == 0
    assert count_commits(repo, b, b) == 0


def test_diff_bytes_applies_with_git_apply(r, tmp_path: Path) -> None:
    path, repo, base = r
    new = change(repo, base, {"f.txt": None, "bin.dat": bytes(range(256)),
                              "d/x.txt": b"x\n", "g.txt": b"g changed\n"})
    # A planted external diff and mnemonic prefixes would break a porcelain diff.
    git(path, "config", "diff.external", "false")
    git(path, "config", "diff.mnemonicPrefix", "true")
    git(path, "config", "diff.noprefix", "true")
    patch = diff_bytes(repo, base, new)
    assert b"GIT binary patch" in patch
    assert diff_bytes(repo, base, base) == b""
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(path), str(other))
    git(other, "checkout", "-q", base)
    (tmp_path / "p.diff").write_bytes(patch)
    git(other, "apply", "--index", str(tmp_path / "p.diff"))
    assert git(other, "write-tree") == odb.tree_of(repo, new)
