"""Hooks that consult the ledger: `uet check` (check.py) and the git hooks that run it
(githooks.py). Imports nothing at package level so `uet check` stays light."""
