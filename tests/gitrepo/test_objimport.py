"""gitrepo.objimport: a private object directory's objects reach the real store only re-hashed;
existing objects are never replaced, forged or corrupt ones never written, the directory's own
alternates never followed."""

from __future__ import annotations

import os
import subprocess as sp
import zlib
from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.gitrepo import objimport
from uet_git.gitrepo.repo import Repo


def _repo(tmp_path: Path) -> Repo:
    return Repo.open(make_repo(tmp_path / "repo", {"t.txt": "original\n"}))


def _write(store: Path, content: str) -> str:
    """``content`` as a blob written into the object directory ``store`` by git itself."""
    return sp.run(["git", "hash-object", "-w", "--stdin"], input=content, text=True,
                  capture_output=True, check=True, cwd=store.parent,
                  env={"PATH": os.environ["PATH"], "GIT_OBJECT_DIRECTORY": str(store),
                       "GIT_DIR": str(store.parent / "repo" / ".git")}).stdout.strip()


def _loose(store: Path, oid: str) -> Path:
    return store / oid[:2] / oid[2:]


def _has(repo: Repo, oid: str) -> bool:
    return sp.run(["git", "cat-file", "-e", oid], cwd=repo.workdir).returncode == 0


def test_new_objects_are_written_and_existing_ones_skipped(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    store = tmp_path / "private"
    objimport.new_store(store, [])  # no alternates: git writes "original" there too
    new = _write(store, "new\n")
    old = _write(store, "original\n")  # already in the real store
    done = objimport.import_objects(repo, store)
    assert (done.written, done.present, done.rejected_count, done.problem) == (1, 1, 0, None)
    assert git(repo.workdir, "cat-file", "-p", new) == "new"
    assert git(repo.workdir, "cat-file", "-p", old) == "original"
    assert done.summary() == ""


def test_a_forged_loose_object_is_rejected_and_an_existing_name_keeps_its_content(
        tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    store = tmp_path / "private"
    objimport.new_store(store, [])
    existing = git(repo.workdir, "rev-parse", "HEAD:t.txt")
    fresh = git(repo.workdir, "hash-object", "--stdin", input="not in the store\n")
    evil = _write(store, "evil\n")
    for name in (existing, fresh):
        _loose(store, name).parent.mkdir(exist_ok=True)
        _loose(store, name).write_bytes(_loose(store, evil).read_bytes())
    # and a file that is no object at all, under a valid name
    junk = "ab" + "c" * 38
    _loose(store, junk).parent.mkdir(exist_ok=True)
    _loose(store, junk).write_bytes(b"not zlib")
    done = objimport.import_objects(repo, store)
    assert git(repo.workdir, "cat-file", "-p", existing) == "original"
    assert not _has(repo, fresh) and not _has(repo, junk)
    assert sorted(done.rejected) == sorted([fresh, junk])
    assert done.written == 1 and done.present == 1  # evil itself, under its own name
    assert "2 object(s)" in done.summary() and fresh[:12] in done.summary()


def test_a_header_that_lies_about_the_type_is_rejected(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    store = tmp_path / "private"
    objimport.new_store(store, [])
    blob = _write(store, "x\n")
    # The same bytes declared a tree (a valid zlib stream, a name that is not its hash).
    _loose(store, blob).write_bytes(zlib.compress(b"tree 2\0x\n"))
    done = objimport.import_objects(repo, store)
    assert done.rejected == [blob] and not _has(repo, blob)


def test_packs_are_imported_and_the_stores_alternates_ignored(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    other = make_repo(tmp_path / "other", {"o.txt": "other repo\n"})
    store = tmp_path / "private"
    # The tool's alternates name another repository: its objects must not come along.
    objimport.new_store(store, [str(other / ".git" / "objects")])
    src = make_repo(tmp_path / "src", {"p.txt": "packed\n"})
    pack = sp.run(["git", "pack-objects", "--all", "-q", str(store / "pack" / "pack")],
                  cwd=src, input="", text=True, capture_output=True, check=True)
    assert pack.returncode == 0
    done = objimport.import_objects(repo, store)
    assert done.problem is None and done.written == 3  # blob, tree, commit
    assert git(repo.workdir, "cat-file", "-p", git(src, "rev-parse", "HEAD:p.txt")) == "packed"
    assert not _has(repo, git(other, "rev-parse", "HEAD:o.txt"))


def test_an_empty_store_costs_no_import(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    store = tmp_path / "private"
    objimport.new_store(store, [])
    assert objimport.import_objects(repo, store) == objimport.Imported()
    assert objimport.import_objects(repo, tmp_path / "missing") == objimport.Imported()


def test_remove_store_never_follows_symlinks(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("x")
    store = tmp_path / "private"
    objimport.new_store(store, [])
    (store / "ab").symlink_to(victim)
    objimport.remove_store(store)
    assert not store.exists() and (victim / "keep").exists()
    store.symlink_to(victim)
    objimport.remove_store(store)
    assert not store.is_symlink() and (victim / "keep").exists()


def test_real_alternates_are_absolute(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    other = make_repo(tmp_path / "other")
    info = repo.common_dir / "objects" / "info"
    info.mkdir(exist_ok=True)
    rel = os.path.relpath(other / ".git" / "objects", repo.common_dir / "objects")
    (info / "alternates").write_text(f"# comment\n{rel}\n/nonexistent/objects\n")
    assert objimport.real_alternates(repo.common_dir / "objects") == [
        os.path.realpath(other / ".git" / "objects")]


def test_forget_missing_makes_the_index_rehash_those_files(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    wt = repo.workdir
    (wt / "a.txt").write_text("a\n")
    (wt / "gone.txt").write_text("g\n")
    git(wt, "add", "a.txt", "gone.txt")
    index = repo.common_dir / "index"
    a, gone = git(wt, "rev-parse", ":a.txt"), git(wt, "rev-parse", ":gone.txt")
    for oid in (a, gone):
        _loose(repo.common_dir / "objects", oid).unlink()
    (wt / "gone.txt").unlink()
    assert objimport.forget_missing(repo, index, wt) == 2
    assert git(wt, "ls-files") == "a.txt\nt.txt"
    tree = git(wt, "write-tree", check=False)  # the entry kept its (missing) name...
    assert tree == ""
    git(wt, "add", "-A")  # ...but no stat: staging hashes the file again
    assert git(wt, "cat-file", "-p", git(wt, "write-tree") + ":a.txt") == "a"
    assert objimport.forget_missing(repo, index, wt) == 0
    assert objimport.forget_missing(repo, tmp_path / "no-index", wt) == 0


def test_is_fresh_store_only_for_exactly_what_new_store_made(tmp_path: Path) -> None:
    store = tmp_path / "private"
    assert not objimport.is_fresh_store(store, ["/a"])
    objimport.new_store(store, ["/a"])
    assert objimport.is_fresh_store(store, ["/a"])
    assert not objimport.is_fresh_store(store, ["/a", "/b"])
    (store / "info" / "alternates").write_text("/a\n/evil\n")
    assert not objimport.is_fresh_store(store, ["/a"])
    for spoil in (lambda: (store / "pack" / "x.pack").write_text(""),
                  lambda: (store / "ab").mkdir(),
                  lambda: (store / "info" / "packs").write_text(""),
                  lambda: (objimport.remove_store(store / "pack"),
                           (store / "pack").symlink_to(tmp_path))):
        objimport.new_store(store, ["/a"])
        spoil()
        assert not objimport.is_fresh_store(store, ["/a"])


def test_empty_store_removes_object_directories_or_makes_the_store_again(
        tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    store = tmp_path / "private"
    objimport.new_store(store, ["/a"])
    info = (store / "info").stat().st_ino
    _write(store, "one\n")
    objimport.empty_store(store, ["/a"])
    assert objimport.is_fresh_store(store, ["/a"])
    assert (store / "info").stat().st_ino == info  # only the object directory went
    (store / "pack" / "x.idx").write_text("")
    (store / "ab").symlink_to(repo.common_dir / "objects")
    objimport.empty_store(store, ["/a"])
    assert objimport.is_fresh_store(store, ["/a"])
    assert (repo.common_dir / "objects" / "info").is_dir()  # the symlink was not followed
