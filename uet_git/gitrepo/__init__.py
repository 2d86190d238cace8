"""The only place that talks to git."""

from uet_git.gitrepo.repo import GitError, Repo, run_git

__all__ = ["GitError", "Repo", "run_git"]
