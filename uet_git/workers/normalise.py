"""Whatever a tool did, as ONE patch commit whose parent is the base its worktree started from.

- ``output = worktree``: the worktree's content (``snapshot_tree``: the tool's own commits plus
  its uncommitted changes, new/deleted/renamed/binary/symlink/exec-bit, ``.gitignore`` honoured,
  never ``.git``) becomes the tree. The tool's commits are squashed; their messages are kept in
  the body. A HEAD moved somewhere not descending from the base (the tool reset or checked out
  elsewhere) changes nothing about that: the content is still taken against the base, and the
  body says so.
- ``output = diff | mbox``: the patch is read from the tool's stdout, or from the file it names
  when stdout is just one path; the worktree is reset to the base (keeping ignored files) and
  the patch applied. A patch that does not apply is an error (the engine quarantines
  ``tool-failed``). Mailbox messages go into the body; the first mail's author is kept.

No change at all (tree == the base's tree) is ``patch=None``; the engine decides (``empty``
unless ``allow_empty``). The commit is written to the object database and pinned by the
worktree's HEAD (a gc root: ``git gc --prune=now`` running meanwhile cannot take it, see
``ledger/keepalive.write_pinned``); the engine must put it under a ref (the ledger) before the
worktree is reset or removed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from uet_git.gitrepo.merge import Change, changed_paths, is_ancestor
from uet_git.gitrepo.objects import make_commit
from uet_git.gitrepo.odb import CommitInfo, Person, get_commit, walk_commits
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.snapshot import (
    Staged,
    apply_patch_ex,
    patch_changes,
    snapshot_tree,
    staged_snapshot,
)
from uet_git.gitrepo.worktrees import pin_head, reset_worktree, worktree_head
from uet_git.ledger.keepalive import write_pinned
from uet_git.spec.models import Workstream

__all__ = ["Change", "Normalised", "changed_paths", "normalise"]

MAX_LISTED_COMMITS = 100
MAX_BODY_LINES_PER_COMMIT = 40
MAX_TOOL_COMMITS = 10_000


@dataclass
class Normalised:
    patch: str | None
    changes: list[Change] = field(default_factory=list)
    tool_commits: list[str] = field(default_factory=list)  # "<short oid> <subject>" per commit
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def normalise(repo: Repo, worktree: Path, base: str, *, ws: Workstream, run: str, attempt: int,
              tool: str, output: str = "worktree", stdout: bytes = b"") -> Normalised:
    worktree = Path(worktree)
    base_tree = get_commit(repo, base, what="the worktree's base").tree
    notes: list[str] = []
    tool_commits: list[str] = []
    bodies: list[str] = []
    author: Person | None = None

    if output in ("diff", "mbox"):
        data, source = _patch_source(stdout, worktree)
        if source:
            notes.append(f"patch read from {source}")
        try:
            reset_worktree(repo, worktree, base, keep_ignored=True)
        except (GitError, OSError) as exc:
            return Normalised(None, [], [], f"cannot reset the worktree to apply the "
                                            f"{output}: {exc}", notes)
        res = apply_patch_ex(repo, worktree, data, mbox=output == "mbox")
        if res.error:
            return Normalised(None, [], [], f"{output} output: {res.error}", notes)
        for m in res.messages:
            subject = m.message.splitlines()[0] if m.message else "(no subject)"
            tool_commits.append(subject)
            bodies.append(_format_commit(subject, m.message, f"{m.author} <{m.email}>"))
        first = next((m for m in res.messages if m.author or m.email), None)
        if first is not None:
            author = _mail_author(first.author, first.email)
    elif output == "worktree":
        head = worktree_head(repo, worktree)
        if head is not None and head != base:
            commits, descends = _tool_commits(repo, head, base)
            for c in commits:
                subject = c.message.splitlines()[0] if c.message.strip() else "(no message)"
                tool_commits.append(f"{c.oid[:12]} {subject}")
                bodies.append(_format_commit(subject, c.message,
                                             f"{c.author.name} <{c.author.email}>"))
            if not descends:
                notes.append(f"the tool moved HEAD to {head}, which does not descend from the "
                             f"base {base[:12]}; the worktree's content was taken against the base")
    else:
        return Normalised(None, [], [], f"unknown output kind {output!r}")

    if not worktree.is_dir():
        return Normalised(None, [], tool_commits, "the tool removed its worktree", notes)
    with contextlib.ExitStack() as held:
        # Only taking the snapshot is "cannot snapshot": a git error while committing it
        # goes on up, as before the snapshot could be staged.
        try:
            snap = held.enter_context(staged_snapshot(repo, worktree))
        except GitError as exc:
            return Normalised(None, [], tool_commits, f"cannot snapshot the worktree: {exc}",
                              notes)
        return _commit_snapshot(repo, worktree, snap, base, base_tree, ws=ws, run=run,
                                attempt=attempt, tool=tool, author=author, bodies=bodies,
                                notes=notes, tool_commits=tool_commits)


def _commit_snapshot(repo: Repo, worktree: Path, snap: Staged, base: str, base_tree: str, *,
                     ws: Workstream, run: str, attempt: int, tool: str, author: Person | None,
                     bodies: list[str], notes: list[str], tool_commits: list[str]
                     ) -> Normalised:
    """``normalise``'s patch commit of the snapshot ``snap``, pinned by the worktree's HEAD,
    and then the snapshot staged (``Staged.stage``): the next reset of the slot starts from a
    worktree exactly at the patch."""
    tree = snap.tree
    if tree == base_tree:
        return Normalised(None, [], tool_commits, None, notes)
    message = _message(ws, run=run, attempt=attempt, tool=tool, bodies=bodies, notes=notes,
                       total=len(tool_commits))
    first = [tree]

    def write() -> str:
        # The first time from the snapshot just taken; again (a concurrent prune removed
        # some of it) from the worktree, which still holds the same files.
        return make_commit(repo, first.pop() if first else snapshot_tree(repo, worktree),
                           [base], message, author=author)

    # No ref names the commit until the engine records it `created`: the worktree's HEAD
    # keeps it (and its new blobs and trees) alive against `git gc --prune=now` till then.
    patch = write_pinned(repo, write, lambda oid: pin_head(repo, worktree, oid), base=base,
                         what=f"{ws.id}: the patch of attempt {attempt}")
    snap.stage()  # its blobs are the patch's, complete on disk and pinned by now
    return Normalised(patch, patch_changes(repo, base, patch), tool_commits, None, notes)


def _tool_commits(repo: Repo, head: str, base: str) -> tuple[list[CommitInfo], bool]:
    """The commits the tool made (oldest first, at most the newest ``MAX_TOOL_COMMITS``) and
    whether HEAD descends from the base."""
    try:
        descends = is_ancestor(repo, base, head)
        commits: list[CommitInfo] = []
        for c in walk_commits(repo, head, exclude=[base]):
            commits.append(c)
            if len(commits) >= MAX_TOOL_COMMITS:
                break
    except GitError:
        return [], False
    commits.reverse()
    return commits, descends


def _format_commit(subject: str, message: str, who: str) -> str:
    lines = [f"* {subject}" + (f" ({who})" if who.strip(" <>") else "")]
    rest = message.strip().splitlines()[1:]
    while rest and not rest[0].strip():
        rest.pop(0)
    if len(rest) > MAX_BODY_LINES_PER_COMMIT:
        rest = [*rest[:MAX_BODY_LINES_PER_COMMIT], "[...]"]
    lines += [f"  {line}".rstrip() for line in rest]
    return "\n".join(lines)


def _message(ws: Workstream, *, run: str, attempt: int, tool: str, bodies: list[str],
             notes: list[str], total: int) -> str:
    subject = " ".join((ws.title or ws.id).split()) or ws.id
    parts = [subject]
    if bodies:
        shown = bodies[:MAX_LISTED_COMMITS]
        if total > len(shown):
            shown.append(f"* ... and {total - len(shown)} more")
        # Indented lines inside the list keep the tool's own "Key: value" lines from being
        # read as this commit's trailers.
        parts.append(f"Squashed {total} commit{'s' if total != 1 else ''} made by the tool:\n\n"
                     + "\n".join(shown))
    parts += notes
    parts.append(f"Uet-Workstream: {ws.id}\nUet-Run: {run}\nUet-Tool: {tool}\n"
                 f"Uet-Attempt: {attempt}")
    return "\n\n".join(parts) + "\n"


def _patch_source(stdout: bytes, worktree: Path) -> tuple[bytes, str | None]:
    """The patch: stdout itself, or the file stdout names when it is a single path."""
    text = stdout.strip()
    if text and b"\n" not in text and len(text) < 4096:
        try:
            name = text.decode()
            p = Path(name)
            p = p if p.is_absolute() else worktree / p
            if p.is_file():
                return p.read_bytes(), name
        except (UnicodeDecodeError, OSError, ValueError):
            pass
    return stdout, None


def _mail_author(name: str, email: str) -> Person | None:
    """The first mail's author, dated now (as a signature made from it always was), or None
    when git could not record it (angle brackets, line breaks, nothing but blanks)."""
    name, email = name or email, email or "unknown@localhost"
    if not name.strip() or any(c in name + email for c in "<>\n\0"):
        return None
    when = int(time.time())
    return Person(name, email, when, (time.localtime(when).tm_gmtoff or 0) // 60)
