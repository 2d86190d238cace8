"""The engine: wires spec -> plan -> workers -> ledger -> hooks into a run.

- ``options``: ``RunOptions`` / ``RunResult`` and how --jobs, --land and dry runs resolve.
- ``scheduler``: the pure scheduling core (ready queue by remaining critical path, blocking,
  deterministic integration order).
- ``pipeline``: one workstream through a worker (setup, tool with retries and the circuit
  breaker, normalise, validate, acceptance), recording each step in the ledger.
- ``verify``: THE integrate-and-verify path (``make_candidate``, ``verify_candidate`` ->
  ``Verdict``), with the checks of the run's base commit.
- ``integrator``: the state walk queued -> applied -> verified -> committed over ``verify``.
- ``rebase``: ``reintegrate`` (``uet land --rebase``) over ``verify``, skipping what the new
  tip already holds.
- ``seed``: seeding a resumed run from its ledger, a table from recorded state to action.
- ``inputs``: what a run starts from (workstream files, uet.toml, --only, tools, target,
  earlier durations, the plan the ledger records); ``dryrun``: what a dry run shows, as data.
- ``loop``: ``Engine``, the run loop (worker threads, the integrator thread, one event queue);
  ``interrupt``: SIGINT/SIGTERM set the cancel event.
- ``context``: ``RunContext`` (what the worker path and the integrator share), the breaker,
  crash points; ``guard``: tools that change refs or config outside their worktree
  (``tampered``); ``orphans``: worktrees holding work the ledger does not know.
- ``events``: the ``Observer`` protocol everything here reports through (never printing).

``execute_run`` (``uet run``), the finishing/landing step and resume are user commands, in
``uet_git.commands``. Modules here import from the layers below (spec, plan, gitrepo, ledger,
workers, hooks), never from ``uet_git.commands`` or ``uet_git.cli``.
"""
