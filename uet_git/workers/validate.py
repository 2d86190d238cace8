"""Validation of a patch before it is queued: scope and size.

Every changed path, both sides of a rename, must be inside ``scope.allow`` (empty = everything)
and outside ``scope.deny`` (``scope-violation``, listing the paths). ``[verify] max_files`` and
``max_lines`` (0 = unlimited) bound the number of changed paths and of added + removed lines
(``too-large``, with the numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

from uet_git.gitrepo.merge import Change
from uet_git.spec.models import VerifyConfig, Workstream
from uet_git.spec.scope import in_scope

MAX_LISTED = 20


def validate_changes(changes: Sequence[Change], ws: Workstream,
                     verify_cfg: VerifyConfig | None) -> tuple[str | None, str]:
    """``(reason, detail)``: reason is None when the patch passes (detail then summarises it),
    else ``scope-violation`` or ``too-large`` with a detail naming the paths or numbers."""
    paths: list[str] = []
    for c in changes:
        for p in (c.old_path, c.path):
            if p and p not in paths:
                paths.append(p)
    outside = [p for p in paths if not in_scope(ws.scope, p)]
    if outside:
        shown = ", ".join(outside[:MAX_LISTED])
        more = f" and {len(outside) - MAX_LISTED} more" if len(outside) > MAX_LISTED else ""
        rules = []
        if ws.scope.allow:
            rules.append("allow: " + ", ".join(ws.scope.allow))
        if ws.scope.deny:
            rules.append("deny: " + ", ".join(ws.scope.deny))
        return ("scope-violation",
                f"{len(outside)} path{'s' if len(outside) != 1 else ''} outside the scope of "
                f"{ws.id}: {shown}{more} ({'; '.join(rules)})")
    files = len(changes)
    added = sum(c.lines_added for c in changes)
    removed = sum(c.lines_removed for c in changes)
    cfg = verify_cfg or VerifyConfig()
    over = []
    if cfg.max_files and files > cfg.max_files:
        over.append(f"{files} files changed (limit {cfg.max_files})")
    if cfg.max_lines and added + removed > cfg.max_lines:
        over.append(f"{added + removed} lines changed (+{added} -{removed}; "
                    f"limit {cfg.max_lines})")
    if over:
        return "too-large", "; ".join(over)
    return None, (f"{files} changed path{'s' if files != 1 else ''} (+{added} -{removed} lines) "
                  f"within scope and limits")
