"""Turning a worktree's content into a tree, and applying a tool's patch to a worktree.

``snapshot_tree`` takes what ``git add -A`` would: tracked and untracked-not-ignored files,
deletions, the executable bit, symlinks, binary files; never anything under a ``.git``.

How: the worktree's own index is read in memory with pygit2, so its stat cache lets
``add_all`` re-hash only files that changed, then ``write_tree``. Measured here at 30,000 files
(median of 5): 72 ms; the git CLI on a copy of the index 65 ms; a fresh index that re-hashes
everything 950 ms (13x). pygit2 is kept as the main path (no subprocess, its C call releases
the GIL); the CLI is the fallback, and the path taken when a filter driver (git-lfs) is
configured, since libgit2 does not run external clean filters (git then runs only the drivers
configured when uet opened the repository, never one a tool added: ``filters.py``). The index is NOT
written back (unless the caller asks: ``staged_snapshot``): the worktree stays exactly as the
tool left it (``git status`` in it still shows the tool's changes, and an orphaned worktree can
be inspected as it was). The worker path stages its snapshot once the patch's commit is complete
on disk and the slot's HEAD: HEAD, index and files then agree, and the next reset of the slot
needs no ``git add -A`` of its own. The worktree is opened
through its administrative directory, not by discovery, so a tool that replaced the worktree's
``.git`` file cannot redirect the snapshot. If libgit2 refuses the content (an embedded
repository, a corrupt index) the same is done with the git CLI and a temporary index.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from uet_git.gitrepo import handles
from uet_git.gitrepo.cleanat import same_path
from uet_git.gitrepo.merge import Change, Status, changed_paths, differing_paths
from uet_git.gitrepo.objects import FILEMODE_TREE, peel_tree
from uet_git.gitrepo.repo import GitError, Repo
from uet_git.gitrepo.worktrees import admin_dir

_FILEMODE_COMMIT = pygit2.enums.FileMode.COMMIT
_FILEMODE_LINK = pygit2.enums.FileMode.LINK


def snapshot_tree(repo: Repo, worktree_path: Path) -> str:
    """The tree id of everything in the worktree, as ``git add -A`` would stage it. Writes the
    blobs and trees into the object database; leaves the worktree and its index untouched."""
    with staged_snapshot(repo, worktree_path) as snap:
        return snap.tree


@dataclass
class Staged:
    """A snapshot whose index can be written afterwards: ``tree`` (``snapshot_tree``'s
    answer) and ``stage()``."""

    tree: str
    _index: pygit2.Index | None = None

    def stage(self) -> None:
        """Write the worktree's index as ``git add -A`` leaves it (what the snapshot read into
        it, stat data included), so that a worktree whose HEAD now is a commit of ``tree`` is
        exactly at it. Only once the tree's objects are safe (the caller's commit of it is
        complete on disk and pinned): an index naming a blob a concurrent ``git gc --prune``
        took would make every later snapshot trust that entry and never write the blob
        again. Nothing when git took the snapshot; a failed write (a held ``index.lock``)
        leaves the index as it was."""
        if self._index is not None:
            with contextlib.suppress(pygit2.GitError, OSError):
                self._index.write()
            self._index = None


@contextlib.contextmanager
def staged_snapshot(repo: Repo, worktree_path: Path) -> Iterator[Staged]:
    """``snapshot_tree`` that the caller may ``stage()`` within the block (the worker path:
    the patch's commit becomes the slot's HEAD, and the next reset starts from a slot
    exactly at it, with no ``git add -A`` of its own)."""
    path = Path(worktree_path).resolve()
    admin = admin_dir(repo, path)
    with contextlib.ExitStack() as held:
        staged: Staged | None = None
        try:
            wr = held.enter_context(handles.opened(admin))
            index = _snapshot_in_process(wr, path)
            if index is not None:
                staged = Staged(str(index.write_tree()), index)
        except (pygit2.GitError, GitError, OSError, ValueError, KeyError):
            staged = None
        # The caller's block runs outside the try: its errors are its own, never a reason
        # to take the snapshot again with git.
        yield staged if staged is not None else Staged(_snapshot_cli(repo, admin, path))


def _snapshot_in_process(wr: pygit2.Repository, path: Path) -> pygit2.Index | None:
    """The worktree's index with its files taken in as ``git add -A`` would, in memory, on
    the worktree's opened repository; None when git must stage the files."""
    if wr.workdir is None or not same_path(wr.workdir, path):
        raise GitError("workdir mismatch")
    if _has_filter_drivers(wr):
        # libgit2 does not run external clean filters (git-lfs): git must stage the files.
        return None
    index = wr.index
    conflicts = index.conflicts
    if conflicts is not None:
        # A tool left a merge half done: take the files as they are (markers included).
        for entry_path in [c[0] or c[1] or c[2] for c in conflicts]:
            del conflicts[entry_path.path]
    index.add_all()
    return index


def patch_changes(repo: Repo, base: str, patch: str) -> list[Change]:
    """``merge.changed_paths(repo, base, patch)``, at a cost that follows the change instead of
    the tree: the paths come from the merge's subtree-skipping walk (equal subtrees are never
    opened) and each one's line counts from its two blobs, where libgit2's tree diff walks every
    entry of both trees (~90 ms at 30,000 files under load, for one changed file). Whenever a
    rename or copy could be found (a path deleted and another added, ``diff.renames`` set to
    copies), a file becomes a link or back, or a submodule is involved, the full diff decides,
    so the result is the same."""
    try:
        old, new = peel_tree(repo, base), peel_tree(repo, patch)
        paths = differing_paths(old, new)
        entries = [(path, _blob_entry(old, path), _blob_entry(new, path)) for path in paths]
        added = any(a is None for _, a, _ in entries)
        deleted = any(b is None for _, _, b in entries)
        if (added and deleted) or _copies_configured(repo) or any(
                (e is not None and e.filemode == _FILEMODE_COMMIT)
                or (a is not None and b is not None and _is_link(a) != _is_link(b))
                for _, a, b in entries for e in (a, b)):
            return changed_paths(repo, base, patch)
        return [_change(path, a, b) for path, a, b in entries]
    except (pygit2.GitError, KeyError, ValueError, TypeError):
        return changed_paths(repo, base, patch)


def _blob_entry(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    try:
        obj = tree[path]
    except KeyError:
        return None
    return None if obj.filemode == FILEMODE_TREE else obj


def _copies_configured(repo: Repo) -> bool:
    try:
        value = repo._pg.config["diff.renames"]
    except (KeyError, pygit2.GitError):
        return False
    return str(value).strip().lower().startswith("cop")


def _is_link(obj: pygit2.Object) -> bool:
    return obj.filemode == _FILEMODE_LINK


def _change(path: str, old: pygit2.Object | None, new: pygit2.Object | None) -> Change:
    """One path's change (added, deleted or modified: never a type change, which the full
    diff reports) as libgit2's tree diff does."""
    status: Status = "A" if old is None else "D" if new is None else "M"
    patch = pygit2.Patch.create_from(old, new, old_as_path=path, new_as_path=path)
    binary = bool(patch.delta.is_binary)
    added = removed = 0
    if not binary:
        _, added, removed = patch.line_stats
    return Change(status=status, path=path, old_path=None, lines_added=added,
                  lines_removed=removed, binary=binary)


def _has_filter_drivers(wr: pygit2.Repository) -> bool:
    """Whether any ``filter.<driver>.clean``/``process`` is configured (repository or user)."""
    try:
        for entry in wr.config:
            name = entry.name.lower()
            if name.startswith("filter.") and name.endswith((".clean", ".process")):
                return True
    except pygit2.GitError:
        return True
    return False


def _snapshot_cli(repo: Repo, admin: Path, path: Path) -> str:
    with tempfile.TemporaryDirectory(prefix="uet-index-") as tmp:
        index = Path(tmp) / "index"
        env = {"GIT_INDEX_FILE": str(index)}
        base = ["--git-dir", str(admin), "--work-tree", str(path)]
        if (admin / "index").is_file():
            shutil.copyfile(admin / "index", index)
            if repo.git(*base, "add", "-A", cwd=path, env=env, check=False).returncode == 0:
                return repo.git(*base, "write-tree", cwd=path, env=env).stdout.decode().strip()
            index.unlink()
        if repo.git(*base, "rev-parse", "--verify", "--quiet", "HEAD", cwd=path,
                    check=False).returncode == 0:
            repo.git(*base, "read-tree", "HEAD", cwd=path, env=env)
        repo.git(*base, "add", "-A", cwd=path, env=env)
        return repo.git(*base, "write-tree", cwd=path, env=env).stdout.decode().strip()


@dataclass
class MailMessage:
    """One message of a mailbox patch: its author and message (subject + body)."""

    author: str
    email: str
    date: str
    message: str


@dataclass
class ApplyResult:
    error: str | None
    messages: list[MailMessage] = field(default_factory=list)


def apply_patch(repo: Repo, worktree: Path, patch_bytes: bytes, mbox: bool = False) -> str | None:
    """Apply a unified diff (or, with ``mbox``, a mailbox of patches) to the worktree's files
    and index without committing. Returns an error line, or None when it applied (an empty
    patch applies trivially)."""
    return apply_patch_ex(repo, worktree, patch_bytes, mbox=mbox).error


def apply_patch_ex(repo: Repo, worktree: Path, patch_bytes: bytes, *,
                   mbox: bool = False) -> ApplyResult:
    """``apply_patch`` that also returns the mailbox messages (for the patch commit's body)."""
    path = Path(worktree).resolve()
    admin = admin_dir(repo, path)
    if not patch_bytes.strip():
        return ApplyResult(None)
    with tempfile.TemporaryDirectory(prefix="uet-patch-") as tmp:
        t = Path(tmp)
        if not mbox:
            (t / "patch").write_bytes(patch_bytes)
            return ApplyResult(_apply_one(repo, admin, path, t / "patch"))
        (t / "mbox").write_bytes(patch_bytes)
        (t / "split").mkdir()
        proc = repo.git("mailsplit", "-b", f"-o{t / 'split'}", "--", str(t / "mbox"),
                        cwd=path, check=False)
        if proc.returncode != 0:
            return ApplyResult(f"not a mailbox: {_first_line(proc.stderr)}")
        messages: list[MailMessage] = []
        for mail in sorted((t / "split").iterdir()):
            msg_file, patch_file = t / "msg", t / "one.patch"
            info = repo.git("mailinfo", "-u", str(msg_file), str(patch_file),
                            input=mail.read_bytes(), cwd=path, check=False)
            if info.returncode != 0:
                return ApplyResult(f"{mail.name}: cannot read mail: {_first_line(info.stderr)}",
                                   messages)
            headers = _headers(info.stdout.decode(errors="replace"))
            body = msg_file.read_text(errors="replace").strip()
            subject = headers.get("Subject", "").strip()
            text = subject + ("\n\n" + body if body else "")
            messages.append(MailMessage(headers.get("Author", ""), headers.get("Email", ""),
                                        headers.get("Date", ""), text.strip()))
            if patch_file.stat().st_size == 0:
                continue
            err = _apply_one(repo, admin, path, patch_file)
            if err:
                label = f"patch {len(messages)} ({subject})" if subject else mail.name
                return ApplyResult(f"{label}: {err}", messages)
        return ApplyResult(None, messages)


def _apply_one(repo: Repo, admin: Path, path: Path, patch: Path) -> str | None:
    """``git apply --index``; all or nothing. Retried leniently for hand-written diffs (wrong
    hunk line counts, no a/ b/ prefixes) before giving up with git's own message."""
    base = ["--git-dir", str(admin), "--work-tree", str(path), "apply", "--index",
            "--whitespace=nowarn"]
    first_error = None
    for extra in ([], ["--recount"], ["-p0", "--recount"]):
        proc = repo.git(*base, *extra, str(patch), cwd=path, check=False)
        if proc.returncode == 0:
            return None
        first_error = first_error or _first_line(proc.stderr) or f"exit {proc.returncode}"
    return f"patch does not apply: {first_error}"


def _headers(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key not in out:
            out[key] = value
    return out


def _first_line(data: bytes) -> str:
    for line in data.decode(errors="replace").splitlines():
        if line.strip():
            return line.strip().removeprefix("error: ").removeprefix("fatal: ")
    return ""


__all__ = ["ApplyResult", "MailMessage", "Staged", "apply_patch", "apply_patch_ex",
           "patch_changes", "snapshot_tree", "staged_snapshot"]
