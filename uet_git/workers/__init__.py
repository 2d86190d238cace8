"""Workers' building blocks: the worktree pool (``pool``), running a tool with no process left
behind (``process``, with the /proc sweep in ``procfs`` and the bubblewrap sandbox in
``sandbox``), tool adapters (``tools``: one module per tool kind and a registry), turning a
tool's work into one patch commit (``normalise``) and checking it before it is queued
(``validate``). The engine wires them.

Nothing is imported here, so ``uet validate`` (which needs only ``tools.check_tool``) does not
pay for the rest.
"""
