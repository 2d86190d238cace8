"""validate_changes: scope (both sides of renames, deny wins) and size limits, on real diffs."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.gitrepo.merge import Change, changed_paths
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import VerifyConfig, Workstream
from uet_git.workers.normalise import normalise
from uet_git.workers.pool import WorktreePool
from uet_git.workers.validate import validate_changes, validate_tree


def _ws(allow=(), deny=()) -> Workstream:
    return Workstream(id="ws-v", scope={"allow": list(allow), "deny": list(deny)})


def test_scope_checks_both_sides_of_a_rename(tmp_path: Path) -> None:
    body = "".join(f"line {i} long enough for rename detection\n" for i in range(30))
    path = make_repo(tmp_path / "repo", {"src/a.py": body, "lib/b.py": "b\n"})
    base = git(path, "rev-parse", "HEAD")
    git(path, "mv", "src/a.py", "lib/a.py")
    (path / "src" / "new.py").write_text("n\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "move")
    head = git(path, "rev-parse", "HEAD")
    changes = changed_paths(Repo.open(path), base, head)
    renames = [c for c in changes if c.status == "R"]
    assert [(c.old_path, c.path) for c in renames] == [("src/a.py", "lib/a.py")]

    reason, detail = validate_changes(changes, _ws(allow=["src/**"]), VerifyConfig())
    assert reason == "scope-violation"
    assert "lib/a.py" in detail and "src/a.py" not in detail.split("(")[0]
    assert detail.startswith("1 path outside the scope of ws-v: lib/a.py")
    reason, detail = validate_changes(changes, _ws(allow=["lib/**"]), VerifyConfig())
    assert reason == "scope-violation" and "src/a.py" in detail and "src/new.py" in detail
    assert validate_changes(changes, _ws(allow=["src/**", "lib/**"]), None)[0] is None
    assert validate_changes(changes, _ws(), None)[0] is None  # empty allow: everything
    reason, detail = validate_changes(changes, _ws(deny=["src/new.py"]), None)
    assert reason == "scope-violation" and "src/new.py" in detail and "deny: src/new.py" in detail


def test_size_limits() -> None:
    changes = [Change("M", f"f{i}.txt", None, 10, 5) for i in range(4)]
    assert validate_changes(changes, _ws(), VerifyConfig(max_files=4, max_lines=60)) == (
        None, "4 changed paths (+40 -20 lines) within scope and limits")
    reason, detail = validate_changes(changes, _ws(), VerifyConfig(max_files=3))
    assert reason == "too-large" and detail == "4 files changed (limit 3)"
    reason, detail = validate_changes(changes, _ws(), VerifyConfig(max_lines=59))
    assert reason == "too-large" and detail == "60 lines changed (+40 -20; limit 59)"
    reason, detail = validate_changes(changes, _ws(), VerifyConfig(max_files=1, max_lines=1))
    assert reason == "too-large" and "4 files" in detail and "60 lines" in detail
    assert validate_changes(changes, _ws(), VerifyConfig(max_files=0, max_lines=0))[0] is None


def test_scope_wins_over_size_and_lists_are_bounded() -> None:
    changes = [Change("A", f"out/{i}.txt", None, 1, 0) for i in range(30)]
    reason, detail = validate_changes(changes, _ws(allow=["src/"]), VerifyConfig(max_files=1))
    assert reason == "scope-violation"
    assert detail.startswith("30 paths outside the scope of ws-v: out/0.txt, out/1.txt")
    assert "and 10 more" in detail and "(allow: src/)" in detail
    git_path = [Change("A", ".git/config", None, 1, 0)]
    assert validate_changes(git_path, _ws(), None)[0] == "scope-violation"


def _patch_changes(tmp_path: Path, files: dict[bytes, bytes], **ws_kw):
    """Changes of a real patch made by writing ``files`` (byte names) into a pool worktree."""
    repo = Repo.open(make_repo(tmp_path / "repo", {"src/a.txt": "a\n", "uet.toml": ""}))
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(base)
    for name, data in files.items():
        full = os.path.join(os.fsencode(wt.path), name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    ws = Workstream(id="ws-v", **ws_kw)
    norm = normalise(repo, wt.path, base, ws=ws, run="r", attempt=1, tool="shell")
    assert norm.error is None and norm.patch is not None
    pool.release(wt)
    pool.close(remove=True)
    return norm.changes, ws


def test_protected_paths_need_may_change_checks(tmp_path: Path) -> None:
    changes, ws = _patch_changes(tmp_path, {b"uet.toml": b"[verify]\n", b".uet/hooks/x": b"x",
                                            b".github/ci.yml": b"c", b"src/a.txt": b"b\n"})
    cfg = VerifyConfig(protected=[".github/**"])
    reason, detail = validate_changes(changes, ws, cfg)
    assert reason == "protected-path"
    listed = detail.split(": ", 1)[1].split(" (")[0].split(", ")
    assert sorted(listed) == [".github/ci.yml", ".uet/hooks/x", "uet.toml"]
    assert "may_change_checks" in detail and "\n" not in detail
    # Without the extra glob the CI file is only a scope question.
    reason, detail = validate_changes(changes, ws, VerifyConfig())
    assert reason == "protected-path" and ".github" not in detail.split(" (")[0]
    allowed = ws.model_copy(update={"may_change_checks": True})
    assert validate_changes(changes, allowed, cfg)[0] is None
    # Protection comes before scope: a scope that allows uet.toml does not let it through.
    scoped = Workstream(id="ws-v", scope={"allow": ["uet.toml", ".uet/**", "**"]})
    assert validate_changes(changes, scoped, cfg)[0] == "protected-path"


def test_a_deleted_or_renamed_protected_file_is_protected(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {".uet/hooks/pre-merge.d/check": "x\n", "a": "a\n"})
    base = git(path, "rev-parse", "HEAD")
    git(path, "mv", ".uet/hooks/pre-merge.d/check", "moved")
    git(path, "commit", "-qm", "move")
    changes = changed_paths(Repo.open(path), base, git(path, "rev-parse", "HEAD"))
    reason, detail = validate_changes(changes, _ws(), None)
    assert reason == "protected-path" and ".uet/hooks/pre-merge.d/check" in detail


def test_a_non_utf8_name_outside_scope_is_a_scope_violation(tmp_path: Path) -> None:
    changes, ws = _patch_changes(tmp_path, {b"\xff.txt": b"x\n", b"src/\xfe\xfd": b"y\n",
                                            b"src/a.txt": b"b\n"},
                                 scope={"allow": ["src/**"]})
    reason, detail = validate_changes(changes, ws, None)
    assert reason == "scope-violation"
    assert detail.startswith("1 path outside the scope of ws-v: \\xff.txt (allow: src/**)")
    detail.encode("utf-8")  # a ledger message: must be valid UTF-8
    # Inside the scope, such a name passes like any other.
    everything = ws.model_copy(update={"scope": ws.scope.model_copy(update={"allow": []})})
    assert validate_changes(changes, everything, None)[0] is None


def test_a_tree_git_fsck_rejects_is_bad_tree(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a": "a\n"})
    base = git(path, "rev-parse", "HEAD")
    (path / ".gitmodules").write_text(
        '[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n')
    git(path, "add", ".gitmodules")
    git(path, "commit", "-qm", "evil")
    evil = git(path, "rev-parse", "HEAD")
    repo = Repo.open(path)
    reason, detail = validate_tree(repo, base, evil)
    assert reason == "bad-tree" and ".gitmodules" in detail and "\n" not in detail
    assert validate_tree(repo, base, base) == (None, "")
    (path / "b").write_text("fine\n")
    git(path, "add", "b")
    git(path, "commit", "-qm", "fine")
    assert validate_tree(repo, evil, git(path, "rev-parse", "HEAD")) == (None, "")
