"""The writer's look after its recent ledger commits: loose object files first (``stat``), the
full look through a fresh handle when one is not loose (packed, or gone)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.gitrepo import objects
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.fsck import fsck
from uet_git.ledger.keepalive import RECHECK_SECONDS, fresh_handle
from uet_git.ledger.writer import Ledger, Step


def _loose(path: Path, oid: str) -> Path:
    return path / ".git" / "objects" / oid[:2] / oid[2:]


def _started(tmp_path: Path) -> tuple[Path, Repo, str, list[str]]:
    path = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base
    ps = []
    for i in range(3):
        tree = objects.build_tree(repo, base, {f"w{i}.txt": f"{i}\n".encode()})
        ps.append(objects.make_commit(repo, tree, [base], f"w{i}: change\n"))
    git(path, "update-ref", "--stdin",
        input="".join(f"create refs/keep/w{i} {p}\n" for i, p in enumerate(ps)))
    return path, repo, base, ps


def test_objects_deleted_behind_the_writer_are_written_again(tmp_path: Path) -> None:
    path, repo, base, ps = _started(tmp_path)
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0], evidence={"log": b"w0 log\n"})
        blob = git(path, "rev-parse", f"refs/uet/ledger/{run}:evidence/w0/1/log")
        tree = git(path, "rev-parse", f"refs/uet/ledger/{run}:evidence/w0")
        # What a concurrent prune does: the files go, this process's object cache stays.
        _loose(path, blob).unlink()
        _loose(path, tree).unlink()
        time.sleep(RECHECK_SECONDS + 0.05)
        led.record_chain("w1", [Step("created", patch=ps[1]), Step("validated")], attempt=1)
        assert _loose(path, blob).is_file() and _loose(path, tree).is_file()
    assert git(path, "cat-file", "-p", blob) == "w0 log"
    assert fsck(Repo.open(path), run) == []
    git(path, "fsck", "--strict", "--no-dangling")


def test_packed_objects_are_there_and_not_written_again(tmp_path: Path) -> None:
    path, repo, base, ps = _started(tmp_path)
    with Ledger.create(repo, base=base, target="main", plan={}) as led:
        run = led.run
        led.record("w0", "created", attempt=1, patch=ps[0], evidence={"log": b"w0 log\n"})
        blob = git(path, "rev-parse", f"refs/uet/ledger/{run}:evidence/w0/1/log")
        git(path, "gc", "-q")  # packs everything (nothing is unreachable: no prune)
        assert not _loose(path, blob).exists()
        time.sleep(RECHECK_SECONDS + 0.05)
        led.record("w0", "validated", attempt=1, evidence={"more": b"w0 more\n"})
        led.record("w2", "created", attempt=1, patch=ps[2])
        # Found in the pack by the full look: nothing of it was written loose again.
        assert not _loose(path, blob).exists()
    assert fsck(Repo.open(path), run) == []
    git(path, "fsck", "--strict", "--no-dangling")


def test_the_fresh_handle_keeps_the_filters_trusted_at_open(tmp_path: Path) -> None:
    """A driver a tool plants after open is not trusted by the writer's fresh handle either."""
    path = make_repo(tmp_path / "repo", {"README.md": "hello\n"})
    repo = Repo.open(path)
    trusted = repo.trusted_filters()
    git(path, "config", "filter.evil.clean", "touch planted")
    fresh = fresh_handle(repo)
    assert fresh.trusted_filters() == trusted
    assert fresh.trusted_filters() != Repo.open(path).trusted_filters()
