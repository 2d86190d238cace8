"""A private object directory for a sandboxed command, and the checked import of what it wrote.

A sandboxed tool sees the repository's object store read-only; the directory it may write is a
fresh, empty object directory of its own whose ``info/alternates`` names the real store (as
mounted inside the sandbox), so its git reads every object and writes new ones there
(``new_store``). After the sandbox has exited, ``import_objects`` copies what it wrote into the
real store, trusting nothing the tool left:

- objects are read through libgit2's loose and pack backends of that directory only (never its
  ``info/alternates``, which the tool may have rewritten), and each is re-hashed from its type
  and content; one whose content does not hash to its name is rejected, never written;
- an object the real store already has is skipped, so nothing existing is replaced or shadowed
  (a forged file named after an existing object changes nothing);
- the rest is written through the real store's object database, which names it by its hash.

No file is ever copied by name. ``remove_store`` then deletes the directory (symlinks in it are
removed, never followed). A rejected object may be what the worktree's index names for a file
(``git add`` wrote it, then the tool forged its file): ``forget_missing`` makes such entries
stale, so the snapshot of the worktree hashes those files again instead of trusting the index.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from uet_git.gitrepo.repo import Repo

__all__ = ["Imported", "empty_store", "forget_missing", "import_objects", "is_fresh_store",
           "new_store", "real_alternates", "remove_store"]

_TYPES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}
MAX_LISTED = 20  # rejected object names kept for the evidence


@dataclass
class Imported:
    """What ``import_objects`` did: objects written, already present, rejected (their names,
    at most ``MAX_LISTED``, and how many), and a problem that stopped it (None = none)."""

    written: int = 0
    present: int = 0
    rejected: list[str] = field(default_factory=list)
    rejected_count: int = 0
    problem: str | None = None

    def summary(self) -> str:
        """One line for the command's log, or "" when nothing needs saying."""
        parts = []
        if self.rejected_count:
            names = ", ".join(r[:12] for r in self.rejected)
            more = self.rejected_count - len(self.rejected)
            parts.append(f"{self.rejected_count} object(s) the command wrote do not match their "
                         f"names and were not imported ({names}{f', +{more}' if more else ''})")
        if self.problem:
            parts.append(f"importing the objects the command wrote stopped: {self.problem}")
        return "; ".join(parts)


def real_alternates(objects_dir: Path) -> list[str]:
    """The alternates of the object store ``objects_dir`` as absolute paths (a relative one is
    relative to ``objects_dir``; git reads them so), existing directories only, deduplicated."""
    try:
        text = (objects_dir / "info" / "alternates").read_text(errors="replace")
    except OSError:
        return []
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = os.path.realpath(os.path.join(objects_dir, line))
        if os.path.isdir(p) and p not in out:
            out.append(p)
    return out


def new_store(path: Path, alternates: Sequence[str]) -> None:
    """Make ``path`` an empty object directory that reads ``alternates`` (paths as the sandboxed
    command sees them). Whatever was at ``path`` is removed first."""
    remove_store(path)
    (path / "info").mkdir(parents=True)
    (path / "pack").mkdir()
    (path / "info" / "alternates").write_text("".join(f"{a}\n" for a in alternates))


def is_fresh_store(path: Path, alternates: Sequence[str]) -> bool:
    """Whether ``path`` is exactly what ``new_store(path, alternates)`` makes: real directories
    ``info/`` (holding only those alternates) and an empty ``pack/``, nothing else. Such a
    store is reused as it is: removing and making directories costs milliseconds a command."""
    try:
        with os.scandir(path) as it:
            top = {e.name: e.is_dir(follow_symlinks=False) for e in it}
        if top != {"info": True, "pack": True} or os.listdir(path / "pack"):
            return False
        with os.scandir(path / "info") as it:
            info = {e.name: e.is_file(follow_symlinks=False) for e in it}
        return info == {"alternates": True} and (path / "info" / "alternates").read_text() \
            == "".join(f"{a}\n" for a in alternates)
    except (OSError, UnicodeDecodeError):
        return False


def remove_store(path: Path) -> None:
    """Delete ``path`` (a private object directory); a symlink in its place is unlinked, and
    ``rmtree`` never follows the ones inside."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def empty_store(path: Path, alternates: Sequence[str]) -> None:
    """Make ``path`` fresh again (``is_fresh_store``) at the least cost: when only object
    directories were added, just those go (removing a directory costs milliseconds here, a
    command's objects fill a few); anything else and the whole store is made again."""
    if is_fresh_store(path, alternates):
        return
    try:
        with os.scandir(path) as it:
            extra = [e for e in it if e.name not in ("info", "pack")]
        if all(len(e.name) == 2 and e.is_dir(follow_symlinks=False) for e in extra):
            for e in extra:
                shutil.rmtree(e.path)
            if is_fresh_store(path, alternates):
                return
    except OSError:
        pass
    new_store(path, alternates)


def _has_objects(path: Path) -> bool:
    """Cheap check: any loose-object directory or pack file at all (the common case, a command
    that wrote nothing, costs one directory listing and no libgit2)."""
    try:
        if any(len(n) == 2 for n in os.listdir(path)):
            return True
        return bool(os.listdir(path / "pack"))
    except OSError:
        return False


def import_objects(repo: Repo, source: Path) -> Imported:
    """Import the objects in the private object directory ``source`` into ``repo``'s store,
    each re-hashed (module docstring). Never raises: a problem stops the import and is
    reported in ``Imported.problem`` (what was imported before it stays)."""
    done = Imported()
    if not _has_objects(source):
        return done
    try:
        private = pygit2.Odb()
        # Backends on the directory itself: its info/alternates is the tool's to rewrite.
        private.add_backend(pygit2.OdbBackendLoose(str(source), 0, False), 2)
        private.add_backend(pygit2.OdbBackendPack(str(source)), 1)
        oids = list(private)
    except (pygit2.GitError, OSError, ValueError) as exc:
        done.problem = f"cannot read {source}: {exc}"
        return done
    real = repo._pg.odb
    for oid in oids:
        name = str(oid)
        try:
            if real.exists(oid):
                done.present += 1
                continue
            kind, data = private.read(oid)
        except (pygit2.GitError, OSError, ValueError, KeyError):
            _reject(done, name)  # unreadable: corrupt, or a forged name libgit2 refused
            continue
        typ = _TYPES.get(int(kind))
        if typ is None or _hash(typ, data, len(name)) != name:
            _reject(done, name)
            continue
        try:
            written = str(real.write(int(kind), data))
        except (pygit2.GitError, OSError, ValueError) as exc:
            done.problem = f"cannot write object {name[:12]}: {exc}"
            return done
        if written != name:  # cannot happen after the check above; never trust a name silently
            _reject(done, name)
            continue
        done.written += 1
    return done


def _reject(done: Imported, name: str) -> None:
    done.rejected_count += 1
    if len(done.rejected) < MAX_LISTED:
        done.rejected.append(name)


def _hash(typ: bytes, data: bytes, hexlen: int) -> str:
    h = hashlib.sha256() if hexlen == 64 else hashlib.sha1()
    h.update(typ + b" " + str(len(data)).encode() + b"\0")
    h.update(data)
    return h.hexdigest()


def forget_missing(repo: Repo, index_path: Path, workdir: Path) -> int:
    """Entries of the index at ``index_path`` (of the worktree ``workdir``) naming an object
    ``repo`` lacks: kept without their cached file stat when the file is there (so whoever
    stages the worktree next hashes it again), removed when it is not. Returns how many; 0
    when the index cannot be read or written by libgit2 (then it is left as it was)."""
    try:
        index = pygit2.Index(str(index_path))
    except (pygit2.GitError, OSError, ValueError):
        return 0
    real = repo._pg.odb
    fixed = 0
    try:
        for entry in list(index):
            if entry.mode == pygit2.enums.FileMode.COMMIT or real.exists(entry.id):
                continue  # a submodule's commit lives in its own repository
            if os.path.lexists(workdir / entry.path):
                index.add(pygit2.IndexEntry(entry.path, entry.id, entry.mode))
            else:
                index.remove(entry.path)
            fixed += 1
        if fixed:
            index.write()
    except (pygit2.GitError, OSError, ValueError, KeyError):
        return 0
    return fixed
