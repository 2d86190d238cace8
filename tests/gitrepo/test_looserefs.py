"""The in-process ref lister answers exactly what ``git for-each-ref`` does (refs outside
``refs/uet/``), loose or packed, and gives up (None) wherever git must judge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.looserefs import refs_outside
from uet_git.gitrepo.refs import for_each_ref_git
from uet_git.gitrepo.repo import Repo


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = make_repo(tmp_path / "r", {"a.txt": "a\n"})
    head = git(path, "rev-parse", "HEAD")
    git(path, "commit", "-q", "--allow-empty", "-m", "second")
    ops = "".join(f"create refs/heads/b{i} {head}\n" for i in range(5))
    ops += "".join(f"create refs/uet/committed/run/ws{i} {head}\n" for i in range(50))
    ops += f"create refs/remotes/origin/main {head}\ncreate refs/notes/x {head}\n"
    git(path, "update-ref", "--stdin", input=ops)
    git(path, "tag", "-a", "-m", "annotated", "v1.0")  # packed, it gets a peeled line
    git(path, "tag", "light")
    git(path, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    return Repo.open(path)


def _git_view(repo: Repo) -> dict[str, str]:
    return {r: o for r, o in for_each_ref_git(repo).items() if not r.startswith("refs/uet/")}


def test_same_as_for_each_ref_loose_packed_and_mixed(repo: Repo) -> None:
    assert refs_outside(repo.common_dir) == _git_view(repo)
    git(repo.workdir, "pack-refs", "--all")
    assert not (repo.common_dir / "refs" / "heads" / "b1").exists()
    assert refs_outside(repo.common_dir) == _git_view(repo)
    # Loose over packed: a packed ref moved (now loose too) and one deleted (from both).
    git(repo.workdir, "update-ref", "refs/heads/b1", "HEAD~1")
    git(repo.workdir, "update-ref", "-d", "refs/heads/b2")
    git(repo.workdir, "update-ref", "refs/uet/x/new", "HEAD")
    found = refs_outside(repo.common_dir)
    assert found == _git_view(repo)
    assert found is not None and "refs/heads/b2" not in found
    assert not any(r.startswith("refs/uet/") for r in found)


def test_lock_files_and_hidden_names_are_not_refs(repo: Repo) -> None:
    heads = repo.common_dir / "refs" / "heads"
    (heads / "b1.lock").write_text("0" * 40 + "\n")
    (heads / ".hidden").write_text("0" * 40 + "\n")
    assert refs_outside(repo.common_dir) == _git_view(repo)


def test_git_decides_what_this_cannot_read(repo: Repo) -> None:
    heads = repo.common_dir / "refs" / "heads"
    os.symlink("b1", heads / "linked")
    assert refs_outside(repo.common_dir) is None
    (heads / "linked").unlink()
    (heads / "broken").write_text("not an oid\n")
    assert refs_outside(repo.common_dir) is None
    (heads / "broken").unlink()
    (heads / "dangling").write_text("ref: refs/heads/nowhere\n")
    assert refs_outside(repo.common_dir) is None
    (heads / "dangling").unlink()
    (heads / "sp ace").write_text(git(repo.workdir, "rev-parse", "HEAD") + "\n")
    assert refs_outside(repo.common_dir) is None
    (heads / "sp ace").unlink()
    assert refs_outside(repo.common_dir) == _git_view(repo)


def test_unsorted_packed_refs_are_read_line_by_line(repo: Repo) -> None:
    git(repo.workdir, "pack-refs", "--all")
    packed = repo.common_dir / "packed-refs"
    body = packed.read_text().splitlines()[1:]
    # No "sorted" trait, uet's refs scattered between the others.
    packed.write_text("# pack-refs with: peeled \n" + "\n".join(reversed(body)) + "\n")
    found = refs_outside(repo.common_dir)
    assert found is not None and not any(r.startswith("refs/uet/") for r in found)
    assert set(found) == set(_git_view(repo))


def test_a_ref_hidden_among_uets_under_a_false_sorted_header_is_still_listed(
        repo: Repo) -> None:
    git(repo.workdir, "pack-refs", "--all")
    packed = repo.common_dir / "packed-refs"
    lines = packed.read_text().splitlines()
    head = git(repo.workdir, "rev-parse", "HEAD")
    at = next(i for i, x in enumerate(lines) if " refs/uet/" in x) + 1
    lines.insert(at, f"{head} refs/heads/hidden")  # git lists it: it reads every line
    packed.write_text("\n".join(lines) + "\n")
    found = refs_outside(repo.common_dir)
    assert found == _git_view(repo)
    assert found is not None and "refs/heads/hidden" in found


def test_a_name_twice_in_packed_refs_is_left_to_git(repo: Repo) -> None:
    git(repo.workdir, "pack-refs", "--all")
    packed = repo.common_dir / "packed-refs"
    old = git(repo.workdir, "rev-parse", "HEAD~1")
    # The tool's value first, the old one last: which git reads depends on its lookup.
    packed.write_text(packed.read_text().replace(
        " refs/heads/b1\n", f" refs/heads/b1\n{old} refs/heads/b1\n"))
    assert refs_outside(repo.common_dir) is None
