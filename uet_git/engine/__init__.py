"""The engine: wires spec -> plan -> workers -> ledger -> hooks into a run.

- ``options``: ``RunOptions`` / ``RunResult`` and how --jobs, --land and dry runs resolve.
- ``scheduler``: the pure scheduling core (ready queue by remaining critical path, blocking,
  deterministic integration order).
- ``pipeline``: one workstream through a worker (setup, tool with retries and the circuit
  breaker, normalise, validate, acceptance), recording each step in the ledger.
- ``integrator``: one patch at a time onto the integration tip (merge, re-verification,
  pre-merge hooks, commit).
- ``premerge``: which pre-merge hooks a candidate gets.
- ``run``: ``execute_run`` (``uet run``) and the run loop shared with resume.
- ``resume``: ``resume_run`` (``uet resume``, ``uet retry``) and ``rebase_run``
  (``uet land --rebase``).
- ``report``: live view, lines, JSON lines; the final status table.
- ``land``, ``rollback``, ``actions``, ``demo``: landing, undoing, retry/drop, the sample.

Modules here import from every layer below (spec, plan, gitrepo, ledger, workers, hooks) and
never from ``uet_git.cli``.
"""
