"""Validation of a patch before it is queued: what judges it, scope and size.

- A change to what judges patches (``uet.toml``, ``.uet`` and everything below it, and each
  ``[verify] protected`` glob) is ``protected-path``, listing the paths, unless the workstream
  declares ``may_change_checks: true`` (its checks still come from the base).
- Every changed path, both sides of a rename, must be inside ``scope.allow`` (empty =
  everything) and outside ``scope.deny`` (``scope-violation``, listing the paths).
- ``[verify] max_files`` and ``max_lines`` (0 = unlimited) bound the number of changed paths
  and of added + removed lines (``too-large``, with the numbers).
- ``validate_tree``: a patch tree that ``git fsck --strict`` would reject in what it adds or
  changes (``.gitmodules`` option URLs, ``.git`` look-alikes, bad modes) is ``bad-tree``.

Paths that are not UTF-8 arrive surrogate-escaped (``os.fsdecode``); in a detail they are
shown with ``\\xNN`` escapes, so the detail is always one line of valid UTF-8.
"""

from __future__ import annotations

from collections.abc import Sequence

from uet_git.gitrepo.merge import Change
from uet_git.gitrepo.repo import Repo
from uet_git.gitrepo.treecheck import tree_problems
from uet_git.spec.models import VerifyConfig, Workstream
from uet_git.spec.scope import in_scope, matches

MAX_LISTED = 20
# What judges every patch (read from the run's base): never changed by a patch in passing.
CHECKS_PATHS = ("uet.toml", ".uet", ".uet/**")


def validate_changes(changes: Sequence[Change], ws: Workstream,
                     verify_cfg: VerifyConfig | None) -> tuple[str | None, str]:
    """``(reason, detail)``: reason is None when the patch passes (detail then summarises it),
    else ``protected-path``, ``scope-violation`` or ``too-large`` with a detail naming the
    paths or numbers."""
    cfg = verify_cfg or VerifyConfig()
    paths: list[str] = []
    for c in changes:
        for p in (c.old_path, c.path):
            if p and p not in paths:
                paths.append(p)
    if not ws.may_change_checks:
        patterns = (*CHECKS_PATHS, *cfg.protected)
        touched = [p for p in paths if any(matches(pat, p) for pat in patterns)]
        if touched:
            return ("protected-path",
                    f"{_count(touched)} that judge patches changed by {ws.id}: "
                    f"{_listing(touched)} (protected: {', '.join(patterns)}; a workstream "
                    f"may change them only with may_change_checks: true)")
    outside = [p for p in paths if not in_scope(ws.scope, p)]
    if outside:
        rules = []
        if ws.scope.allow:
            rules.append("allow: " + ", ".join(ws.scope.allow))
        if ws.scope.deny:
            rules.append("deny: " + ", ".join(ws.scope.deny))
        return ("scope-violation",
                f"{_count(outside)} outside the scope of {ws.id}: {_listing(outside)} "
                f"({'; '.join(rules)})")
    files = len(changes)
    added = sum(c.lines_added for c in changes)
    removed = sum(c.lines_removed for c in changes)
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


def validate_tree(repo: Repo, base: str, patch: str) -> tuple[str | None, str]:
    """``("bad-tree", detail)`` when ``patch`` adds or changes an entry relative to ``base`` that
    ``git fsck --strict`` would reject (the detail lists the problems), else ``(None, "")``."""
    problems = tree_problems(repo, base, patch)
    if not problems:
        return None, ""
    shown = "; ".join(problems[:MAX_LISTED])
    more = f" and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return ("bad-tree", f"{len(problems)} entr{'ies' if len(problems) != 1 else 'y'} git fsck "
                        f"--strict would reject: {shown}{more}")


def show_path(path: str) -> str:
    """A path for a one-line message: bytes that are not UTF-8 (surrogate-escaped) as ``\\xNN``,
    control characters as Python escapes."""
    raw = path.encode("utf-8", "surrogateescape")
    text = raw.decode("utf-8", "backslashreplace")
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                       for c in text)
    return text


def _count(paths: list[str]) -> str:
    return f"{len(paths)} path{'s' if len(paths) != 1 else ''}"


def _listing(paths: list[str]) -> str:
    shown = ", ".join(show_path(p) for p in paths[:MAX_LISTED])
    more = f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else ""
    return shown + more
