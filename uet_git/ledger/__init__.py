"""The git-native patch ledger. One module per concept:

- ``states``: the state machine as data (``State``, ``Reason``, transitions, attempt rules);
- ``layout``: ref names under ``refs/uet/`` and run ids;
- ``log``: a run's ledger read back (``Event``, ``WsRecord``, ``read_ledger``, the plan);
- ``expected``: the refs a run must have, from its ledger alone (``expected_refs``);
- ``lock``: one writer per run, and stale ref locks of a killed writer;
- ``writer``: ``Ledger``, the single writer (``record``, ``event``, ``rebase_integration``),
  with ``groupcommit`` (its queue), ``transition`` (one transition, the group's transaction),
  ``transact`` (objects and refs under concurrent housekeeping), ``memory``, ``opening``
  (start, open) and ``crash`` (fault injection);
- ``repair``: refs reset from the ledger (``repair``, ``uet fsck --repair``);
- ``query``: runs, a run's status and history (readers never lock); ``evidence``: evidence;
- ``fsck``: refs and ledger checked against each other; ``gc``: refs of old runs collected.

Import the submodules directly; this package imports nothing so that readers stay light.
"""
