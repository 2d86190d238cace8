"""The user commands above the engine: what ``uet run``, ``resume``, ``land``, ``rollback``,
``retry``/``drop`` and ``demo`` do, each a function the CLI calls with a repo, the command's
arguments and an observer. They never print: the CLI renders their results.

- ``run``, ``resume``: a run from the spec, or continued from its ledger (the engine does it).
- ``land``: the target fast-forwards to the integration tip the ledger recorded;
  ``landing_blockers`` for the warning at run start.
- ``rollback``: undo what a run landed (reset or reverts).
- ``journal``: both move the target journaled (``run: land-intent`` before any checkout is
  touched); ``recover_landing`` finishes or undoes an interrupted move.
- ``actions``: ``retry_ws`` / ``drop_ws`` on one workstream of a run.
- ``demo``: the sample repository of ``uet demo``.
"""
