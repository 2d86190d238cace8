"""Pre-merge hooks are read from the candidate's tree: uet.toml commands first, then the
executables of .uet/hooks/pre-merge.d/ sorted by name (not the plain files)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git, make_repo
from uet_git.engine.premerge import collect_hooks, hook_argv
from uet_git.gitrepo import Repo
from uet_git.spec.models import Config


def test_hooks_from_config_and_candidate_tree(tmp_path: Path):
    d = ".uet/hooks/pre-merge.d"
    path = make_repo(tmp_path / "r", {"README.md": "x\n", f"{d}/20-b": "#!/bin/sh\n",
                                      f"{d}/10-a": "#!/bin/sh\n", f"{d}/notes.txt": "doc\n"})
    (path / d / "20-b").chmod(0o755)
    (path / d / "10-a").chmod(0o755)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "hooks")
    repo = Repo.open(path)
    config = Config.model_validate({"hooks": {"pre-merge": ["make check"]}})
    hooks = collect_hooks(repo, config, git(path, "rev-parse", "HEAD"))
    assert [h.name for h in hooks] == ["pre-merge[0]", f"{d}/10-a", f"{d}/20-b"]
    assert hook_argv(hooks[0], path) == "make check"
    assert hook_argv(hooks[1], path) == [str(path / d / "10-a")]
    # The first commit has no executable hooks (modes were 644 there).
    first = git(path, "rev-parse", "HEAD~1")
    assert [h.name for h in collect_hooks(repo, Config(), first)] == []
