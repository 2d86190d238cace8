"""The user commands above the engine: what ``uet land``, ``rollback``, ``retry``/``drop`` and
``demo`` do (``run`` and ``resume`` live here too), each a function the CLI calls with a repo,
the command's arguments and an observer. They never print: the CLI renders their results.

- ``land``: the target fast-forwards to the integration tip the ledger recorded, journaled
  (``run: land-intent`` before any checkout is touched), recovered after a crash.
- ``rollback``: undo what a run landed (reset or reverts), journaled the same way.
- ``actions``: ``retry_ws`` / ``drop_ws`` on one workstream of a run.
- ``demo``: the sample repository of ``uet demo``.
"""
