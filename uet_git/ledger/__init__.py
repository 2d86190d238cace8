"""The git-native patch ledger: ref layout, state machine, atomic transitions, queries.

Import the submodules directly (``uet_git.ledger.writer.Ledger``, ``uet_git.ledger.query``);
this package imports nothing so that readers stay light.
"""
