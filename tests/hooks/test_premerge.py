"""What judges a candidate comes from a commit (the run's base), never from a checkout or a
candidate: uet.toml as committed, the executables committed in .uet/hooks/pre-merge.d/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.hooks.premerge import HOOK_DIR, collect_hooks, config_at, hook_command, write_hooks
from uet_git.spec.models import Config

D = HOOK_DIR


def commit_all(path: Path, msg: str) -> str:
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", msg)
    return git(path, "rev-parse", "HEAD")


def test_hooks_from_config_and_the_commit_tree(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"README.md": "x\n", f"{D}/20-b": "#!/bin/sh\n",
                                      f"{D}/10-a": "#!/bin/sh\n", f"{D}/notes.txt": "doc\n",
                                      f"{D}/sub/30-c": "#!/bin/sh\n"})
    first = git(path, "rev-parse", "HEAD")
    for name in ("20-b", "10-a", "sub/30-c"):
        (path / D / name).chmod(0o755)
    os.symlink("/bin/true", path / D / "15-link")
    head = commit_all(path, "hooks")
    repo = Repo.open(path)
    config = Config.model_validate({"hooks": {"pre-merge": ["make check"]}})
    hooks = collect_hooks(repo, config, head)
    # Plain files, symlinks and files in subdirectories are not hooks.
    assert [h.name for h in hooks] == ["pre-merge[0]", f"{D}/10-a", f"{D}/20-b"]
    out = tmp_path / "hooks-out"
    assert hook_command(hooks[0], out) == "make check"
    assert hook_command(hooks[1], out) == [str(out / "10-a")]
    # The first commit has no executable hooks (modes were 644 there).
    assert [h.name for h in collect_hooks(repo, Config(), first)] == []


def test_write_hooks_writes_the_commits_files_not_the_checkouts(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {f"{D}/check": "#!/bin/sh\nexit 1\n",
                                      f"{D}/lib.sh": "helper\n"})
    (path / D / "check").chmod(0o755)
    base = commit_all(path, "hook")
    (path / D / "check").write_text("#!/bin/sh\nexit 0\n")  # the checkout differs
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "planted").write_text("left from before\n")
    write_hooks(Repo.open(path), base, dest)
    assert (dest / "check").read_text() == "#!/bin/sh\nexit 1\n"
    assert os.access(dest / "check", os.X_OK)
    assert (dest / "lib.sh").read_text() == "helper\n"
    assert not os.access(dest / "lib.sh", os.X_OK)
    assert not (dest / "planted").exists()


def test_config_at_reads_the_committed_uet_toml(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "r", {"uet.toml": '[hooks]\npre-merge = ["./check"]\n'})
    base = git(path, "rev-parse", "HEAD")
    (path / "uet.toml").write_text("[hooks]\npre-merge = []\n")  # uncommitted edit
    repo = Repo.open(path)
    assert config_at(repo, base).hooks.pre_merge == ["./check"]
    (path / "uet.toml").write_text("[hooks]\nbogus = 1\n")
    bad = commit_all(path, "bad config")
    with pytest.raises(UetError, match=rf"uet.toml at {bad[:12]}: hooks.bogus: unknown field"):
        config_at(repo, bad)
    (path / "uet.toml").unlink()
    gone = commit_all(path, "no config")
    assert config_at(repo, gone) == Config()
