"""A run's worktree pool, sized and set up from ``uet.toml``'s ``[worktree]``: one slot per job
and one for the integrator. Apart from the run loop so that re-integration (``uet land
--rebase``, ``engine/rebase.py``), which every ``uet land`` imports, does not import the loop
and its verification queue."""

from __future__ import annotations

from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Config
from uet_git.workers.pool import WorktreePool, pool_root


def make_pool(repo: Repo, config: Config, jobs: int) -> WorktreePool:
    return WorktreePool(repo, root=pool_root(repo, config.worktree.root), size=jobs + 1,
                        keep_ignored=config.worktree.keep_ignored,
                        include=list(config.worktree.include),
                        setup=list(config.worktree.setup), keep=config.worktree.keep,
                        teardown=list(config.worktree.teardown))
