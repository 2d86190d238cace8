"""A checkout brought to one side of a landing, path by path: the undo and the recovery.

Each path that differs between the two sides goes to the target's version, in the index copy
and on disk, where its file holds either side's version or is missing; the content is
recognised hashed raw, then as ``git add`` would hash it (autocrlf, filters). A file holding
anything else is the user's and stays; nothing is read or written through a symbolic link.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pygit2

from uet_git.gitrepo.checkouts import _SAFE, _git
from uet_git.gitrepo.indexclean import _entry, _libgit2_reads, _open_index
from uet_git.gitrepo.indexlock import _Held
from uet_git.gitrepo.landpaths import _GITLINK, _LINK, _Ent, _prefixes, _tree_changes
from uet_git.gitrepo.refs import ZERO_OID
from uet_git.gitrepo.repo import Repo, run_git


def _on_disk(repo: Repo, checkout: Path, paths: list[str], expected: dict[str, set[str]]
             ) -> dict[str, _Ent | None]:
    """``{path: (oid, mode)}`` of what the files hold (None: missing, or a directory). The
    content is hashed raw first; a regular file that matches neither expected blob is hashed
    again the way ``git add`` would (autocrlf, clean filters such as LFS), so a file git wrote
    through a filter is still recognised as git's."""
    out: dict[str, _Ent | None] = {}
    again: list[str] = []
    for path in paths:
        full = checkout / path
        try:
            st = full.lstat()
        except OSError:
            out[path] = None
            continue
        if full.is_symlink():
            out[path] = (str(pygit2.hash(os.fsencode(os.readlink(full)))), _LINK)
        elif full.is_file():
            mode = 0o100755 if st.st_mode & 0o100 else 0o100644
            oid = str(pygit2.hashfile(str(full)))
            out[path] = (oid, mode)
            if oid not in expected.get(path, set()):
                again.append(path)
        else:
            out[path] = None
    if again:
        data = b"".join(os.fsencode(p) + b"\n" for p in again)
        proc = repo.git(*_SAFE, "hash-object", "--stdin-paths", cwd=checkout, input=data,
                        check=False)
        oids = proc.stdout.decode().split()
        if proc.returncode == 0 and len(oids) == len(again):
            for path, oid in zip(again, oids, strict=True):
                ent = out[path]
                assert ent is not None
                out[path] = (oid, ent[1])
    return out


def _partial(repo: Repo, full: Path, *ents: _Ent | None) -> bool:
    """True when the regular file at ``full`` holds a proper prefix (empty included) of one of
    the blobs: what a checkout killed while writing the file leaves (git unlinks the old file,
    creates the new one and writes it in order). A user's own file is never such a prefix."""
    try:
        size = full.lstat().st_size
        if full.is_symlink() or not full.is_file():
            return False
        blobs = [repo._pg[e[0]].data for e in ents if e is not None and e[1] != _LINK]
        candidates = [b for b in blobs if size < len(b)]
        if not candidates:
            return False
        head = full.read_bytes()[: max(len(b) for b in candidates)]
    except (OSError, KeyError, ValueError):
        return False
    return any(b.startswith(head) and len(head) < len(b) for b in candidates)


def _index_entries(h: _Held, paths: Iterable[str]) -> Mapping[str, _Ent]:
    """``{path: (oid, mode)}`` of the stage-0 entries of ``paths`` in the index copy, as
    ``git ls-files -s`` lists them: read by libgit2 where it reads the index as git does,
    else from git."""
    try:
        index = _open_index(h.tmp) if _libgit2_reads(h.gitdir) else None
        if index is not None:
            found = {p: _entry(index, p) for p in paths}
            return {p: e for p, e in found.items() if e is not None}
    except (OSError, pygit2.GitError, ValueError):
        pass
    return _ls_index(h)


def _ls_index(h: _Held) -> dict[str, _Ent]:
    out = run_git([*_SAFE, "ls-files", "-s", "-z"], cwd=h.checkout, env=h.env).stdout
    entries: dict[str, _Ent] = {}
    for item in out.split(b"\0"):
        if not item:
            continue
        meta, _, path = item.partition(b"\t")
        mode, oid, stage = meta.split(b" ")
        if stage == b"0":
            entries[os.fsdecode(path)] = (oid.decode(), int(mode, 8))
    return entries


def _through_link(checkout: Path, path: str) -> bool:
    return any((checkout / d).is_symlink() for d in _prefixes(path))


def _prune_dirs(checkout: Path, path: str) -> None:
    for d in reversed(_prefixes(path)):
        try:
            (checkout / d).rmdir()
        except OSError:
            return


def _converge(repo: Repo, h: _Held, target: str, other: str) -> tuple[int, list[str]]:
    """With the lock held and the index copy made: every path that differs between ``other``
    and ``target`` goes to ``target``'s version, in the copy and on disk, where the file holds
    either side's version or is missing. A file holding anything else is the user's: it stays,
    and is returned. Returns (paths changed, paths left)."""
    changes = _tree_changes(repo, other, target)
    index = _index_entries(h, changes)
    plain = [p for p, (o, t) in changes.items()
             if not any(e is not None and e[1] == _GITLINK for e in (o, t))
             and not _through_link(h.checkout, p)]
    disk = _on_disk(repo, h.checkout, plain,
                    {p: {e[0] for e in changes[p] if e is not None} for p in plain})
    remove: list[str] = []
    write: list[str] = []
    set_index: dict[str, _Ent | None] = {}
    left: list[str] = []
    for path, (o, t) in changes.items():
        full = h.checkout / path
        cur = index.get(path)
        if (o is not None and o[1] == _GITLINK) or (t is not None and t[1] == _GITLINK):
            if cur != t:
                set_index[path] = t  # a submodule's own checkout is never touched
            continue
        if _through_link(h.checkout, path):
            # Never read or write through a symbolic link, unless it is the other side's and
            # goes (sorted order: it was classified already); written after the removals.
            links = [d for d in _prefixes(path) if (h.checkout / d).is_symlink()]
            if t is not None and all(d in remove for d in links):
                write.append(path)
                if cur != t:
                    set_index[path] = t
            else:
                left.append(path)
            continue
        exists = full.is_symlink() or full.exists()
        now = disk[path]
        if now is not None and now not in (o, t) and _partial(repo, full, o, t):
            now = o  # git was killed while writing it: ours, not the user's
        if t is None:
            if exists and now is not None and now == o:
                remove.append(path)
            elif exists:
                left.append(path)
        elif now != t:
            # A directory here may be the other side's, emptied below: decided after removals.
            if not exists or full.is_dir() or now == o:
                write.append(path)
            else:
                left.append(path)
        if path in left and cur not in (o, t):
            continue  # the user staged something of their own there
        if cur != t:
            set_index[path] = t
    for path in sorted(remove, key=lambda p: -p.count("/")):
        (h.checkout / path).unlink()
        _prune_dirs(h.checkout, path)
    if set_index:
        lines = b"".join(
            (f"0 {ZERO_OID}\t".encode() if ent is None else f"{ent[1]:06o} {ent[0]}\t".encode())
            + os.fsencode(path) + b"\0"
            for path, ent in sorted(set_index.items()))
        _git(repo, h.checkout, "update-index", "-z", "--add", "--remove", "--replace",
             "--index-info",
             env=h.env, input=lines)
    writable = []
    for path in write:
        blocked = [d for d in _prefixes(path)
                   if (h.checkout / d).is_symlink()
                   or ((h.checkout / d).exists() and not (h.checkout / d).is_dir())]
        full = h.checkout / path
        if blocked or (full.is_dir() and not full.is_symlink()):
            left.append(path)
        else:
            writable.append(path)
    if writable:
        data = b"".join(os.fsencode(p) + b"\0" for p in writable)
        # -u records the written files' stat data: a refresh cannot, once autocrlf or a filter
        # changed a file's size (git then reads it as modified without looking).
        _git(repo, h.checkout, "checkout-index", "-u", "-f", "-z", "--stdin", env=h.env,
             input=data)
    # An entry set above with no file written (the file held its content already) has no stat
    # data yet: git would read the file as modified until a refresh. Written and removed
    # paths need none.
    written = set(writable)
    if any(ent is not None and path not in written for path, ent in set_index.items()):
        _git(repo, h.checkout, "update-index", "-q", "--refresh", env=h.env, check=False)
    return len(remove) + len(writable) + len(set_index), sorted(left)
