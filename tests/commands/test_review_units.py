"""Unit tests of the review commands' pieces on scripted ledgers and small repos: the subset a
partial landing may take, RUN given twice, the fields a re-read workstream changes, the
conflict text, and `uet land/rollback --dry-run` writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands.landkit import scripted_run, two_committed
from tests.conftest import git, make_repo, uet
from uet_git.cli.runarg import pick_run
from uet_git.commands.land import select
from uet_git.commands.respec import field_changes
from uet_git.errors import UetError
from uet_git.gitrepo.merge import conflict_text, rebase_conflict_text
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger
from uet_git.spec.models import Workstream


def chain(tmp_path: Path):  # type: ignore[no-untyped-def]
    return scripted_run(tmp_path / "repo", [
        ("a", "committed", {"a.txt": b"a\n"}),
        ("b", "committed", {"b.txt": b"b\n"}),
        ("c", "committed", {"c.txt": b"c\n"}),
    ], deps={"b": ["a"], "c": []})


def test_select_closed_subsets(tmp_path: Path) -> None:
    b = chain(tmp_path)
    with Ledger.open(b.repo, b.run) as ledger:
        assert select(b.repo, ledger, ["a", "b"], None) == ["a", "b"]
        assert select(b.repo, ledger, ["c"], None) == ["c"]
        assert select(b.repo, ledger, None, ["a"]) == ["c"]  # b needs a: left out too
        assert select(b.repo, ledger, ["a", "b", "c"], None) is None  # everything: plain
        with pytest.raises(UetError, match="not closed under dependencies: b needs a"):
            select(b.repo, ledger, ["b", "c"], None)
        with pytest.raises(UetError, match="zz is not a committed workstream"):
            select(b.repo, ledger, ["zz"], None)
        with pytest.raises(UetError, match="nothing selected"):
            select(b.repo, ledger, None, ["a", "c"])


def test_pick_run() -> None:
    assert pick_run(None, None) is None
    assert pick_run("r1", None) == "r1"
    assert pick_run(None, "r1") == "r1"
    assert pick_run("r1", "r1") == "r1"
    with pytest.raises(UetError, match="two runs given"):
        pick_run("r1", "r2")


def test_field_changes() -> None:
    old = Workstream.model_validate({"id": "a", "command": "x", "acceptance": ["false"]})
    new = Workstream.model_validate({"id": "a", "command": "x", "acceptance": ["true"]})
    assert field_changes(old, new) == ['acceptance: ["false"] -> ["true"]']
    assert field_changes(old, old) == []


def test_conflict_text_has_both_sides_and_the_base(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"f.txt": "1\n2\n3\n", "g.txt": "g\n", "bin": "x\0\n"})
    git(path, "checkout", "-q", "-b", "side")
    (path / "f.txt").write_text("1\nSIDE\n3\n")
    (path / "g.txt").write_text("g side\n")
    (path / "bin").write_bytes(b"y\0side\n")
    git(path, "commit", "-qam", "side")
    git(path, "checkout", "-q", "main")
    (path / "f.txt").write_text("1\nMAIN\n3\n")
    git(path, "rm", "-q", "g.txt")
    (path / "bin").write_bytes(b"y\0main\n")
    git(path, "commit", "-qam", "main")
    repo = Repo.open(path)
    text = rebase_conflict_text(repo, "side", "main", what="patch ws-x").decode()
    assert "=== bin: changed on both sides (binary)" in text
    assert "=== f.txt: changed on both sides\n1\n<<<<<<< tip " in text
    assert "MAIN\n||||||| base " in text and "\n2\n=======\nSIDE\n>>>>>>> patch ws-x " in text
    assert "=== g.txt: deleted in tip " in text and "g side\n" in text
    main = git(path, "rev-parse", "main")
    assert conflict_text(repo, main, main, main) == b""


def test_land_and_rollback_dry_run_write_nothing(tmp_path: Path) -> None:
    b = two_committed(tmp_path)

    def refs() -> str:
        return git(b.path, "for-each-ref", "--format=%(objectname) %(refname)")

    before = refs()
    proc = uet("land", b.run, "--dry-run", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert f"would move refs/heads/main: {b.base[:12]} -> {b.tip[:12]} (2 commits" in proc.stdout
    assert refs() == before
    proc = uet("rollback", b.run, "--dry-run", cwd=b.path)
    assert proc.returncode == 1 and "landed nothing" in proc.stderr
    assert uet("land", b.run, cwd=b.path).returncode == 0
    before = refs()
    proc = uet("rollback", b.run, "--dry-run", cwd=b.path)
    assert proc.returncode == 0, proc.stderr
    assert f"would reset: refs/heads/main: {b.tip[:12]} -> {b.base[:12]}" in proc.stdout
    assert refs() == before
