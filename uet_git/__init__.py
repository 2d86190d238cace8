"""uet: run many code-changing tools on one git repository, each in its own worktree, and land
only verified results. Everything uet knows lives in git (refs under ``refs/uet/``)."""

__version__ = "0.1.0"
