"""What a run's writer knows of its run: the ledger tip and tree, the integration tip, each
workstream's record and state ref, the attempts' patch refs. Filled when the writer starts or
opens the run, changed only after a transaction committed (so it is what the refs are), and
read without locks (``Ledger.state``: records are replaced whole, never changed once
published)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from uet_git.ledger import layout
from uet_git.ledger.log import WsRecord


@dataclass
class Memory:
    run: str
    base: str = ""
    target: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    tip: str = ""
    tree: str = ""
    integration: str = ""
    integration_ref: bool = True  # False after `uet gc` removed it (recreated on a move)
    states: dict[str, WsRecord] = field(default_factory=dict)
    patches: dict[tuple[str, int], str] = field(default_factory=dict)
    fanout: bool = False  # evidence/_XY/WS/N (a big run) instead of evidence/WS/N

    def own_refs(self) -> dict[str, str]:
        """What the run's refs must be (from memory, no reads)."""
        run = self.run
        want = {layout.ledger_ref(run): self.tip}
        if self.integration_ref:
            want[layout.integration_ref(run)] = self.integration
        for rec in list(self.states.values()):
            if rec.ref and rec.target:
                want[rec.ref] = rec.target
        for (ws, n), oid in list(self.patches.items()):
            want[layout.patch_ref(run, ws, n)] = oid
        return want
