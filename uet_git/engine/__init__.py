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
- ``run``: ``execute_run`` (``uet run``) and the run loop shared with resume.
- ``report``: live view, lines, JSON lines; the final status table.
- ``land``, ``rollback``, ``actions``, ``demo``: landing, undoing, retry/drop, the sample.

Modules here import from every layer below (spec, plan, gitrepo, ledger, workers, hooks) and
never from ``uet_git.cli``.
"""
