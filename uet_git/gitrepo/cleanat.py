"""Whether a worker slot already is exactly at a commit, decided in process.

A slot reset (``git checkout -f`` + ``git clean``) costs a git process or two even when the
slot holds exactly the commit it is reset to (the next workstream starts from the commit the
last one's acceptance ran on). ``clean_at`` answers "would that reset change anything?" without
git, and says yes (so git runs) whenever it is not sure: only a plain index (version 2 or 3, no
entry git would treat specially: conflicted, assume-unchanged, skip-worktree, intent-to-add, a
submodule; no required extension such as a split or sparse index), a detached HEAD file naming
the commit, no filter driver configured, the index's entries exactly the commit's tree, every
file as the index records it (libgit2's index-to-workdir diff: stat cache, re-hashing a file
whose stat changed or is racy, as ``git status`` does), and nothing in the worktree but the
index's paths and their directories (no untracked or ignored file, no empty or nested
directory).
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2

SMALL_CHECKOUT = 2000  # index entries up to which work in process beats a git process

_ENTRY_FIXED = 62  # stat data (40) + sha-1 (20) + flags (2)
_ASSUME_VALID = 0x8000
_EXTENDED = 0x4000
_STAGE = 0x3000
_NAME_MASK = 0x0FFF
_GITLINK = 0o160000


def index_paths(admin: Path, limit: int = SMALL_CHECKOUT) -> set[str] | None:
    """The paths of the worktree's index (``<admin>/index``) when it is a plain one of at most
    ``limit`` entries, else None (git decides): see the module's docstring."""
    parsed = _parse_index(admin, limit)
    return parsed[0] if parsed is not None and not parsed[1] else None


def hides_entries(admin: Path, limit: int = SMALL_CHECKOUT) -> bool:
    """Whether the index (of at most ``limit`` entries) flags an entry assume-unchanged,
    skip-worktree or intent-to-add: ``git checkout -f`` keeps those flags, and with them a
    file the tool changed (git takes it as up to date), so the index must go first."""
    parsed = _parse_index(admin, limit)
    return parsed is not None and parsed[1]


def _parse_index(admin: Path, limit: int) -> tuple[set[str], bool] | None:
    """The index's paths and whether any entry is flagged (see ``hides_entries``); None when
    it is not a version 2 or 3 index of at most ``limit`` entries git would read as we do
    (conflicted, a submodule, a required extension, a name it cannot compare)."""
    try:
        data = (admin / "index").read_bytes()
    except OSError:
        return None
    if len(data) < 32 or data[:4] != b"DIRC":
        return None
    version = int.from_bytes(data[4:8], "big")
    count = int.from_bytes(data[8:12], "big")
    if version not in (2, 3) or count > limit:
        return None
    end = len(data) - 20  # the trailing checksum
    pos, paths, flagged = 12, set(), False
    for _ in range(count):
        if pos + _ENTRY_FIXED > end:
            return None
        mode = int.from_bytes(data[pos + 24:pos + 28], "big")
        flags = int.from_bytes(data[pos + 60:pos + 62], "big")
        if flags & _STAGE or mode == _GITLINK:
            return None
        start = pos + _ENTRY_FIXED
        if flags & (_ASSUME_VALID | _EXTENDED):
            flagged = True
            if flags & _EXTENDED:
                start += 2  # the extended flags (skip-worktree, intent-to-add)
        nul = data.find(b"\0", start, end)
        if nul < 0 or (flags & _NAME_MASK) not in (nul - start, _NAME_MASK):
            return None
        try:
            paths.add(data[start:nul].decode("utf-8"))
        except UnicodeDecodeError:
            return None
        pos += (start - pos + (nul - start) + 8) // 8 * 8  # 1 to 8 NULs pad the entry
    while pos < end:  # extensions: a lower-case signature is one git requires us to understand
        if pos + 8 > end or not data[pos:pos + 1].isupper():
            return None
        pos += 8 + int.from_bytes(data[pos + 4:pos + 8], "big")
    return (paths, flagged) if pos == end else None


def holds_only(path: Path, files: set[str]) -> bool:
    """Whether the worktree at ``path`` holds nothing but ``files`` (and their directories)
    beside its ``.git``: any other entry (untracked, ignored, an empty or untracked directory,
    a nested repository, a directory where a file is tracked is fine here: the diff decides
    that) is False."""
    dirs = {"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)}
    pending = [("", Path(path))]
    try:
        while pending:
            prefix, current = pending.pop()
            with os.scandir(current) as it:
                for entry in it:
                    rel = prefix + entry.name
                    if rel == ".git" or rel in files:
                        continue  # the gitfile (repaired before this) or a tracked path
                    if rel in dirs and entry.is_dir(follow_symlinks=False):
                        pending.append((rel + "/", Path(entry.path)))
                        continue
                    return False
    except OSError:
        return False
    return True


def clean_at(admin: Path, path: Path, commit: str, limit: int = SMALL_CHECKOUT) -> bool:
    """Whether the worktree at ``path`` (admin dir ``admin``) is exactly what ``git checkout
    -f --detach COMMIT`` + ``git clean -ffdx`` would leave: then neither has work to do."""
    try:
        if (admin / "HEAD").read_bytes() != commit.encode() + b"\n":
            return False
    except OSError:
        return False
    files = index_paths(admin, limit)
    if files is None:
        return False
    try:
        wr = pygit2.Repository(str(admin))
        if wr.workdir is None or Path(wr.workdir).resolve() != Path(path).resolve():
            return False
        if any(e.name.lower().startswith("filter.") for e in wr.config):
            return False  # a clean filter could make git see a file differently
        want = wr.get(commit)
        if not isinstance(want, pygit2.Commit):
            return False
        index = wr.index
        if len(index) != len(files) or index.conflicts is not None:
            return False
        if len(index.diff_to_tree(want.tree)) or len(wr.diff()):
            return False
    except (pygit2.GitError, KeyError, ValueError, TypeError, OSError):
        return False
    return holds_only(path, files)


def _attributes_possible(wr: pygit2.Repository, common: Path, paths: set[str],
                         changed: list[str]) -> bool:
    """Whether a checkout could meet attributes libgit2 may treat otherwise than git (e.g.
    ``working-tree-encoding``): a ``.gitattributes`` in the index or the change, the
    repository's ``info/attributes``, or a configured or default global attributes file."""
    def named(p: str) -> bool:
        return p == ".gitattributes" or p.endswith("/.gitattributes")
    if any(named(p) for p in paths) or any(named(p) for p in changed):
        return True
    if (common / "info" / "attributes").exists():
        return True
    try:
        if "core.attributesfile" in wr.config:
            return True
    except pygit2.GitError:
        return True
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.exists(os.path.join(xdg, "git", "attributes"))


def checkout_clean(admin: Path, path: Path, common: Path, commit: str,
                   limit: int = SMALL_CHECKOUT) -> bool:
    """Move a worktree that ``clean_at`` its own detached HEAD to ``commit`` with libgit2's
    checkout (index, files, HEAD), then check the result with ``clean_at``. False when any
    precondition does not hold or the result is not exactly ``commit``: the caller runs git,
    whose ``checkout -f`` + ``clean`` repairs whatever this left half done."""
    try:
        head = (admin / "HEAD").read_bytes().decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    if len(head) != len(commit) or not clean_at(admin, path, head, limit):
        return False
    files = index_paths(admin, limit)
    if files is None:
        return False
    try:
        wr = pygit2.Repository(str(admin))
        want = wr.get(commit)
        if not isinstance(want, pygit2.Commit):
            return False
        delta = wr.index.diff_to_tree(want.tree)
        changed = [p for d in delta.deltas for p in (d.old_file.path, d.new_file.path)]
        if _attributes_possible(wr, common, files, changed):
            return False
        wr.checkout_tree(want, strategy=pygit2.enums.CheckoutStrategy.FORCE)
        wr.set_head(want.id)
    except (pygit2.GitError, KeyError, ValueError, TypeError, OSError):
        return False
    return clean_at(admin, path, commit, limit)
