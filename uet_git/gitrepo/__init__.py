"""The only place that talks to git (see docs/internals.md, "gitrepo")."""

from uet_git.gitrepo.refs import RefConflict, RefTransaction, RefUpdater
from uet_git.gitrepo.repo import GitError, Repo, run_git

__all__ = ["GitError", "RefConflict", "RefTransaction", "RefUpdater", "Repo", "run_git"]
