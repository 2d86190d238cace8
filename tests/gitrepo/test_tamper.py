"""A tool that changes the repository's config, hooks or refs: each change named in one line,
put back by restore, and nothing someone else changed since is clobbered."""

from __future__ import annotations

import os
import stat
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.tamper import changes, restore, snapshot

TOOL = """\
set -e
git config core.hooksPath /tmp/x
git update-ref refs/heads/main "$OTHER"
git update-ref refs/heads/evil "$OTHER"
printf '#!/bin/sh\\necho planted\\n' > "$(git rev-parse --git-common-dir)/hooks/pre-commit"
chmod +x "$(git rev-parse --git-common-dir)/hooks/pre-commit"
"""


@pytest.fixture(scope="module")
def _setup_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``setup``'s repository, built once per module."""
    path = make_repo(tmp_path_factory.mktemp("tamper") / "repo", {"a.txt": "a\n"})
    main = git(path, "rev-parse", "HEAD")
    (path / "a.txt").write_text("b\n")
    git(path, "commit", "-qam", "other")
    other = git(path, "rev-parse", "HEAD")
    git(path, "update-ref", "refs/heads/main", main)
    git(path, "reset", "-q", "--hard", main)
    git(path, "update-ref", "refs/uet/runs/r1/x", main)
    return path, main, other


@pytest.fixture
def setup(_setup_template: tuple[Path, str, str], tmp_path: Path) -> tuple[Repo, str, str]:
    """A copy of that repository: a branch ``main`` checked out, a commit ``other`` on no
    branch, one ref of uet's."""
    template, main, other = _setup_template
    path = tmp_path / "repo"
    copy_repo(template, path)
    return Repo.open(path), main, other


def _run_tool(repo: Repo, script: str, other: str, cwd: Path | None = None) -> None:
    sp.run(["sh", "-c", script], cwd=cwd or repo.workdir, check=True, capture_output=True,
           env={**os.environ, "OTHER": other})


def test_tool_changes_named_one_line_each_and_restored(setup) -> None:
    repo, main, other = setup
    config_before = (repo.common_dir / "config").read_bytes()
    before = snapshot(repo)
    _run_tool(repo, TOOL, other)
    after = snapshot(repo)
    lines = changes(before, after)
    assert lines == [
        "config: core.hookspath set to '/tmp/x'",
        "hook pre-commit added",
        "ref refs/heads/evil created at " + other[:12],
        f"ref refs/heads/main moved {main[:12]} -> {other[:12]}",
    ]
    done = restore(repo, before, after)
    assert len(done) == 4 and not any("not restored" in d for d in done), done
    assert (repo.common_dir / "config").read_bytes() == config_before
    assert git(repo.workdir, "config", "--get", "core.hooksPath", check=False) == ""
    assert not (repo.common_dir / "hooks" / "pre-commit").exists()
    assert repo.read_ref("refs/heads/main") == main
    assert repo.read_ref("refs/heads/evil") is None
    assert changes(before, snapshot(repo)) == []


def test_a_ref_moved_again_by_someone_else_is_not_clobbered(setup) -> None:
    repo, main, other = setup
    before = snapshot(repo)
    _run_tool(repo, TOOL, other)
    after = snapshot(repo)
    # The user moves main after the tool ran, and edits the config too.
    git(repo.workdir, "update-ref", "refs/heads/main", main)
    git(repo.workdir, "commit", "-q", "--allow-empty", "-m", "the user's own")
    users = git(repo.workdir, "rev-parse", "HEAD")
    git(repo.workdir, "config", "user.mine", "yes")
    done = restore(repo, before, after)
    assert repo.read_ref("refs/heads/main") == users
    assert any(d.startswith("ref refs/heads/main not restored: it moved again") for d in done)
    assert any(d.startswith("config not restored") for d in done)
    assert git(repo.workdir, "config", "--get", "user.mine") == "yes"
    # The rest still went back.
    assert repo.read_ref("refs/heads/evil") is None
    assert not (repo.common_dir / "hooks" / "pre-commit").exists()


def test_packed_refs_worktree_heads_and_uet_refs_are_no_change(setup) -> None:
    repo, main, other = setup
    wt = repo.workdir.parent / "wt"
    git(repo.workdir, "worktree", "add", "-q", "--detach", str(wt), main)
    before = snapshot(repo)
    git(repo.workdir, "pack-refs", "--all")
    git(wt, "checkout", "-q", "--detach", other)  # a worktree's HEAD moves legitimately
    git(repo.workdir, "checkout", "-q", "-b", "topic")  # the main worktree's HEAD too
    git(repo.workdir, "update-ref", "refs/uet/runs/r1/x", other)
    lines = changes(before, snapshot(repo))
    assert lines == [f"ref refs/heads/topic created at {main[:12]}"]


def test_changed_hook_and_info_restored_byte_for_byte_with_mode(setup) -> None:
    repo, _, _ = setup
    hook = repo.common_dir / "hooks" / "post-checkout"
    hook.write_bytes(b"#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    exclude = repo.common_dir / "info" / "exclude"
    exclude_before = exclude.read_bytes()
    sample = repo.common_dir / "hooks" / "pre-push.sample"
    before = snapshot(repo)
    hook.write_bytes(b"#!/bin/sh\ncurl evil\n")
    hook.chmod(0o700)
    with exclude.open("ab") as f:
        f.write(b"*.secret\n")
    sample.chmod(0o777)
    (repo.common_dir / "info" / "attributes").write_text("* filter=evil\n")
    after = snapshot(repo)
    assert changes(before, after) == [
        "hook post-checkout changed",
        "hook pre-push.sample mode changed 0755 -> 0777",
        "info/attributes added",
        "info/exclude changed",
    ]
    restore(repo, before, after)
    assert hook.read_bytes() == b"#!/bin/sh\nexit 0\n"
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    assert stat.S_IMODE(sample.stat().st_mode) == 0o755
    assert exclude.read_bytes() == exclude_before
    assert not (repo.common_dir / "info" / "attributes").exists()
    assert changes(before, snapshot(repo)) == []


def test_hooks_dir_replaced_by_a_symlink_put_back(setup, tmp_path: Path) -> None:
    repo, _, _ = setup
    hooks = repo.common_dir / "hooks"
    names = sorted(p.name for p in hooks.iterdir())
    before = snapshot(repo)
    elsewhere = tmp_path / "evil-hooks"
    elsewhere.mkdir()
    (elsewhere / "pre-commit").write_text("#!/bin/sh\n")
    for p in hooks.iterdir():
        p.unlink()
    hooks.rmdir()
    hooks.symlink_to(elsewhere)
    after = snapshot(repo)
    lines = changes(before, after)
    assert "hooks added (a symbolic link)" in lines
    assert all(ln.endswith("removed") for ln in lines if ln != "hooks added (a symbolic link)")
    restore(repo, before, after)
    assert hooks.is_dir() and not hooks.is_symlink()
    assert sorted(p.name for p in hooks.iterdir()) == names
    assert changes(before, snapshot(repo)) == []


def test_worktree_config_and_deleted_ref_restored(setup) -> None:
    repo, main, other = setup
    wt = repo.workdir.parent / "wt"
    git(repo.workdir, "worktree", "add", "-q", "--detach", str(wt), main)
    git(repo.workdir, "branch", "keepme", other)
    before = snapshot(repo)
    git(repo.workdir, "config", "extensions.worktreeConfig", "true")
    git(wt, "config", "--worktree", "core.fsmonitor", "/tmp/evil")
    git(repo.workdir, "branch", "-D", "keepme")
    after = snapshot(repo)
    lines = changes(before, after)
    assert "config: extensions.worktreeconfig set to 'true'" in lines
    wt_lines = [ln for ln in lines if ln.startswith("worktrees/")]
    assert len(wt_lines) == 2 and wt_lines[0].endswith("config.worktree created")
    assert wt_lines[1].endswith("core.fsmonitor set to '/tmp/evil'")
    assert f"ref refs/heads/keepme deleted (was {other[:12]})" in lines
    restore(repo, before, after)
    assert repo.read_ref("refs/heads/keepme") == other
    assert git(wt, "config", "--get", "core.fsmonitor", check=False) == ""
    assert changes(before, snapshot(repo)) == []


def test_full_oids_name_each_ref_change_in_full_and_the_rest_alike(setup) -> None:
    """What the tamper guard records: ``uet land`` reads these lines back, so no oid is cut."""
    repo, main, other = setup
    before = snapshot(repo)
    _run_tool(repo, TOOL, other)
    git(repo.workdir, "branch", "-f", "gone", main)
    mid = snapshot(repo)
    git(repo.workdir, "branch", "-D", "gone")
    after = snapshot(repo)
    short, full = changes(before, after), changes(before, after, full_oids=True)
    assert full == [
        "config: core.hookspath set to '/tmp/x'",
        "hook pre-commit added",
        f"ref refs/heads/evil created at {other}",
        f"ref refs/heads/main moved {main} -> {other}",
    ]
    assert [ln for ln in short if not ln.startswith("ref ")] == full[:2]
    assert changes(mid, after, full_oids=True) == [f"ref refs/heads/gone deleted (was {main})"]


def test_refs_the_caller_moved_itself_are_ignored(setup) -> None:
    repo, _, other = setup
    before = snapshot(repo)
    git(repo.workdir, "update-ref", "refs/heads/main", other)  # e.g. uet's own landing
    git(repo.workdir, "update-ref", "refs/heads/evil", other)
    after = snapshot(repo)
    ignore = {"refs/heads/main"}
    assert changes(before, after, ignore_refs=ignore) == [
        f"ref refs/heads/evil created at {other[:12]}"]
    assert restore(repo, before, after, ignore_refs=ignore) == [
        "ref refs/heads/evil (created by the tool) deleted"]
    assert repo.read_ref("refs/heads/main") == other


def test_a_removed_worktree_is_not_a_change(setup) -> None:
    repo, main, _ = setup
    wt = repo.workdir.parent / "wt"
    git(repo.workdir, "config", "extensions.worktreeConfig", "true")
    git(repo.workdir, "worktree", "add", "-q", "--detach", str(wt), main)
    git(wt, "config", "--worktree", "user.name", "pool")
    before = snapshot(repo)
    git(repo.workdir, "worktree", "remove", "--force", str(wt))
    after = snapshot(repo)
    assert changes(before, after) == []
    assert restore(repo, before, after) == []
    assert not (repo.common_dir / "worktrees").exists() or not any(
        (repo.common_dir / "worktrees").iterdir())
