"""Atomic ref transactions with compare-and-swap, checked with the git CLI."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo
from uet_git.gitrepo.refs import (
    ZERO_OID,
    RefConflict,
    RefTransaction,
    RefUpdater,
    for_each_ref,
    pack_refs,
)
from uet_git.gitrepo.repo import GitError, Repo


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``r``'s repository (two commits), built once per module, and the commits' ids."""
    path = make_repo(tmp_path_factory.mktemp("refs") / "repo")
    git(path, "commit", "-q", "--allow-empty", "-m", "second")
    return path, git(path, "rev-parse", "HEAD~1"), git(path, "rev-parse", "HEAD")


@pytest.fixture
def r(_template: tuple[Path, str, str], tmp_path: Path):
    template, first, second = _template
    path = tmp_path / "repo"
    copy_repo(template, path)
    return path, Repo.open(path), first, second


def refs(path: Path) -> dict[str, str]:
    out = git(path, "for-each-ref", "--format=%(refname) %(objectname)", "refs/uet/")
    return dict(line.split(" ") for line in out.splitlines() if line)


@pytest.mark.parametrize("long_lived", [False, True])
def test_ops_apply_atomically(r, long_lived: bool) -> None:
    path, repo, c1, c2 = r
    updater = RefUpdater(repo) if long_lived else None
    tx = repo.transaction(updater)
    assert isinstance(tx, RefTransaction)
    tx.create("refs/uet/a", c1).update("refs/uet/b", c2, None).create("refs/uet/c", c1)
    tx.commit()
    assert refs(path) == {"refs/uet/a": c1, "refs/uet/b": c2, "refs/uet/c": c1}
    repo.transaction(updater).update("refs/uet/a", c2, c1).delete("refs/uet/b", c2) \
        .verify("refs/uet/c", c1).verify("refs/uet/none", None).commit()
    assert refs(path) == {"refs/uet/a": c2, "refs/uet/c": c1}
    if updater:
        updater.close()


@pytest.mark.parametrize("long_lived", [False, True])
def test_a_mismatch_anywhere_applies_nothing(r, long_lived: bool) -> None:
    path, repo, c1, c2 = r
    updater = RefUpdater(repo) if long_lived else None
    repo.transaction(updater).create("refs/uet/a", c1).create("refs/uet/b", c1) \
        .create("refs/uet/good", c1).commit()
    before = refs(path)
    bad_ops = [
        lambda t: t.create("refs/uet/a", c2),  # exists
        lambda t: t.update("refs/uet/a", c2, c2),  # wrong old value
        lambda t: t.delete("refs/uet/b", c2),  # wrong old value
        lambda t: t.delete("refs/uet/zz", c1),  # missing
        lambda t: t.verify("refs/uet/a", None),  # exists
        lambda t: t.verify("refs/uet/zz", c1),  # missing
    ]
    for bad in bad_ops:
        tx = repo.transaction(updater)
        tx.create("refs/uet/new", c1).update("refs/uet/good", c2, c1)
        bad(tx)
        with pytest.raises(RefConflict, match="refused, nothing changed") as info:
            tx.commit()
        assert "\n" not in str(info.value)
        assert not info.value.lock_held
        assert refs(path) == before
    # The updater respawns after git died on the failures above.
    repo.transaction(updater).update("refs/uet/b", c2, c1).commit()
    assert refs(path)["refs/uet/b"] == c2
    if updater:
        updater.close()


def test_a_held_lock_is_a_conflict(r) -> None:
    path, repo, c1, c2 = r
    repo.transaction().create("refs/uet/a", c1).commit()
    lock = path / ".git" / "refs" / "uet" / "a.lock"
    lock.write_text("held")
    with pytest.raises(RefConflict, match="refs/uet/a") as info:
        repo.transaction().update("refs/uet/a", c2, c1).commit()
    assert info.value.lock_held
    with RefUpdater(repo) as up, pytest.raises(RefConflict):
        repo.transaction(up).update("refs/uet/a", c2, c1).commit()
    lock.unlink()
    assert refs(path) == {"refs/uet/a": c1}


def test_racing_transactions_have_exactly_one_winner(r) -> None:
    path, repo, c1, c2 = r
    for round_ in range(3):
        ref = f"refs/uet/race{round_}"
        repo.transaction().create(ref, c1).commit()
        results: list[str] = []
        barrier = threading.Barrier(6)

        def racer(ref: str = ref, barrier: threading.Barrier = barrier,
                  results: list[str] = results) -> None:
            tx = repo.transaction().update(ref, c2, c1)
            barrier.wait()
            try:
                tx.commit()
                results.append("won")
            except RefConflict:
                results.append("lost")

        threads = [threading.Thread(target=racer) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["lost"] * 5 + ["won"]
        assert refs(path)[ref] == c2


def test_racing_creates_have_exactly_one_winner(r) -> None:
    _path, repo, c1, c2 = r
    results: list[str] = []
    barrier = threading.Barrier(4)

    def racer(i: int) -> None:
        with RefUpdater(repo) as up:
            tx = repo.transaction(up).create("refs/uet/once", c1 if i % 2 else c2)
            barrier.wait()
            try:
                tx.commit()
                results.append("won")
            except RefConflict:
                results.append("lost")

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1


def test_bad_input_is_refused_before_git(r) -> None:
    path, repo, c1, _c2 = r
    with pytest.raises(GitError, match="not a full object id"):
        repo.transaction().create("refs/uet/a", "HEAD")
    with pytest.raises(GitError, match="bad ref name"):
        repo.transaction().create("uet/a", c1)
    with pytest.raises(GitError, match="twice"):
        repo.transaction().create("refs/uet/a", c1).delete("refs/uet/a", c1)
    with pytest.raises(GitError, match="old value"):
        repo.transaction().delete("refs/uet/a", None)  # type: ignore[arg-type]
    assert ZERO_OID == "0" * 40
    repo.transaction().commit()  # empty: nothing to do
    assert refs(path) == {}


def test_updater_runs_many_transactions_in_one_process(r) -> None:
    path, repo, c1, c2 = r
    with RefUpdater(repo) as up:
        for i in range(50):
            repo.transaction(up).create(f"refs/uet/many/{i}", c1).commit()
        pid = up._proc.pid if up._proc else None
        repo.transaction(up).create("refs/uet/many/last", c2).commit()
        assert up._proc is not None and up._proc.pid == pid
    assert len(refs(path)) == 51


def test_for_each_ref_is_the_one_lister(r) -> None:
    path, repo, c1, c2 = r
    git(path, "update-ref", "refs/uet/b/x", c1)
    git(path, "update-ref", "refs/uet/a", c2)
    git(path, "update-ref", "refs/uetother/y", c2)
    assert for_each_ref(repo, "refs/uet/") == {"refs/uet/a": c2, "refs/uet/b/x": c1}
    assert for_each_ref(repo, "refs/uet/b/", "refs/uetother/") == {
        "refs/uet/b/x": c1, "refs/uetother/y": c2}
    assert for_each_ref(repo, "refs/nothing/") == {}
    assert "refs/heads/main" in for_each_ref(repo)
    assert repo.list_refs("refs/uet/") == for_each_ref(repo, "refs/uet/")


def test_pack_refs_moves_every_loose_ref_into_packed_refs(r) -> None:
    path, repo, a, b = r
    RefTransaction(repo).create("refs/uet/x/one", a).create("refs/uet/x/two", b).commit()
    assert (path / ".git" / "refs" / "uet" / "x" / "one").exists()
    pack_refs(repo)
    packed = (path / ".git" / "packed-refs").read_text()
    assert f"{a} refs/uet/x/one" in packed and f"{b} refs/uet/x/two" in packed
    assert not (path / ".git" / "refs" / "uet" / "x" / "one").exists()
    assert refs(path) == {"refs/uet/x/one": a, "refs/uet/x/two": b}
    (path / ".git" / "packed-refs.lock").write_text("")  # another git packs right now
    with pytest.raises(GitError, match=r"packed-refs\.lock"):
        pack_refs(repo)
