"""``snapshot.patch_changes``: the same list as ``merge.changed_paths`` (libgit2's full tree
diff, renames found), whatever the change: added, modified, deleted, mode and type changes,
binary files, file/directory swaps, renames, on real repositories."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.merge import changed_paths
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.snapshot import patch_changes


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    files = {f"src/pkg{i}/mod{j}.py": "".join(f"line {k} of {i}/{j}\n" for k in range(30))
             for i in range(4) for j in range(5)}
    files |= {"README": "readme\n", "bin/tool": "#!/bin/sh\necho hi\n", "data/blob.bin": "x"}
    path = make_repo(tmp_path / "repo", files)
    (path / "data" / "blob.bin").write_bytes(bytes(range(256)) * 8)
    os.symlink("README", path / "link")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "base")
    return Repo.open(path)


def _edit_one(w: Path) -> None:
    (w / "src/pkg1/mod2.py").write_text("new\n" + (w / "src/pkg1/mod2.py").read_text()[7:])


def _add_delete_mode(w: Path) -> None:
    (w / "src/pkg3/new.py").write_text("a\nb\n")
    (w / "src/pkg0/mod0.py").unlink()
    (w / "bin/tool").chmod(0o755)


def _binary_and_type(w: Path) -> None:
    (w / "data/blob.bin").write_bytes(bytes(range(255, -1, -1)) * 9)
    (w / "link").unlink()
    (w / "link").write_text("now a file\n")
    (w / "README").unlink()
    os.symlink("src", w / "README")


def _rename(w: Path) -> None:
    (w / "src/pkg2/mod1.py").rename(w / "src/pkg2/moved.py")


def _file_to_dir(w: Path) -> None:
    (w / "README").unlink()
    (w / "README").mkdir()
    (w / "README" / "index.md").write_text("readme\n")


def _everything(w: Path) -> None:
    for f in (_edit_one, _add_delete_mode, _binary_and_type):
        f(w)
    (w / "deep/a/b/c").mkdir(parents=True)
    (w / "deep/a/b/c/new.txt").write_text("deep\n")


@pytest.mark.parametrize("change", [_edit_one, _add_delete_mode, _binary_and_type, _rename,
                                    _file_to_dir, _everything])
def test_patch_changes_equals_the_full_diff(repo: Repo, change: Callable[[Path], None]
                                            ) -> None:
    w = repo.workdir
    base = git(w, "rev-parse", "HEAD")
    change(w)
    git(w, "add", "-A")
    git(w, "commit", "-qm", "patch")
    patch = git(w, "rev-parse", "HEAD")
    assert patch_changes(repo, base, patch) == changed_paths(repo, base, patch)
    assert patch_changes(repo, patch, base) == changed_paths(repo, patch, base)


def test_no_change(repo: Repo) -> None:
    head = git(repo.workdir, "rev-parse", "HEAD")
    assert patch_changes(repo, head, head) == []


def test_attributes_that_make_a_text_file_binary(repo: Repo) -> None:
    w = repo.workdir
    (w / ".gitattributes").write_text("src/pkg1/* binary\n")
    git(w, "add", "-A")
    git(w, "commit", "-qm", "attributes")
    base = git(w, "rev-parse", "HEAD")
    _edit_one(w)
    (w / "src/pkg2/mod0.py").write_text("changed\n")
    git(w, "commit", "-qam", "patch")
    patch = git(w, "rev-parse", "HEAD")
    got = patch_changes(repo, base, patch)
    assert got == changed_paths(repo, base, patch)
    assert [c.binary for c in got] == [True, False]
