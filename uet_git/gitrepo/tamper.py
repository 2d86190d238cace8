"""Did a tool change the repository's git configuration, hooks or refs? And putting them back.

Without a sandbox a tool can write anywhere, including the repository's own control files: a
``core.hooksPath`` or ``core.fsmonitor`` makes every later git command (the user's too) run its
program; a hook planted in ``hooks/`` runs on the user's next commit; a moved branch makes uet
(or the user) build on the tool's commit. ``snapshot`` before the tool and after it,
``changes`` names each difference in one line (the evidence of a ``tampered`` quarantine), and
``restore`` puts back what the tool changed.

What a snapshot holds (all in the common git dir):

- the config files git reads for this repository: ``config``, ``config.worktree`` and each
  ``worktrees/<id>/config.worktree`` (bytes, mode, and the settings as ``git config --list``
  reads them, so a change is named by key; ``include.path`` is a key like any other, the file
  it names is not followed);
- every file under ``info/`` and under the default ``hooks/`` directory (content, mode, or the
  target of a symbolic link);
- every ref outside ``refs/uet/`` (uet's own) with its oid, compared as a map, so a
  ``git pack-refs`` in between is no change. The HEADs of worktrees are not in it: they move
  legitimately (uet's own worktrees, the user's checkout). Read in process
  (``gitrepo.looserefs``: loose refs without descending into ``refs/uet/``, then
  ``packed-refs``); ``git for-each-ref`` only when that cannot be sure;
- for the worktrees the caller names (``Ties``): what ties each to this repository, its admin
  dir's ``commondir``, ``gitdir`` and ``locked`` and the worktree's own ``.git`` file (keyed by
  its absolute path). A tool that rewrote them would send uet's own git in that worktree to a
  repository of its making. Their removal is a change even when the whole admin dir went.

A snapshot starts no process. The settings of a config file are parsed (``git config --file
- --null --list``, from the bytes kept) only when ``changes`` finds the file's bytes differ,
to name the changed key; a file too big to keep is parsed when the snapshot is taken.
``worktree_snapshot`` holds only one worktree's admin dir config and ties: all a sandboxed
tool can write of what a full snapshot holds (``workers/sandbox.py``).

``restore`` is a compare-and-swap everywhere: a ref or file is put back only while it still
holds what the tool left (the ``after`` snapshot), so something the user (or another run)
changed since is never clobbered; it is reported instead.

A snapshot cannot tell who made a change: a commit the user makes on their branch while a tool
runs, or uet's own landing (``--land continuous``) in that window, looks like the tool's. The
caller passes the refs it moved itself (or knows the user may move) as ``ignore_refs``, so they
are neither reported nor put back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from uet_git.gitrepo.looserefs import refs_outside
from uet_git.gitrepo.refs import RefConflict, for_each_ref
from uet_git.gitrepo.repo import GitError, Repo, run_git
from uet_git.gitrepo.worktrees import admin_dir

# Content is kept for restoring up to this size; a bigger file is compared by its digest only.
MAX_KEPT = 1 << 20
_OWN_REFS = "refs/uet/"


@dataclass(frozen=True)
class FileState:
    """One control file: a regular file (``link`` False) or a symbolic link (``data`` = its
    target). ``data`` is None when the file was too big to keep (``digest`` still compares)."""

    digest: str
    mode: int
    link: bool
    data: bytes | None


Settings = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Ties:
    """What ties one worktree to the repository: its admin dir (relative to the common dir)
    and its ``.git`` file (absolute). Found before the tool runs (``ties_of``): the tool may
    rewrite the very ``gitdir`` that ``admin_dir`` finds the admin dir by."""

    admin: str
    gitfile: str

    def paths(self) -> tuple[str, ...]:
        return (f"{self.admin}/commondir", f"{self.admin}/gitdir", f"{self.admin}/locked",
                self.gitfile)


@dataclass(frozen=True)
class Snapshot:
    common_dir: Path
    # Path relative to the common dir (a worktree's .git file: absolute) -> its state.
    files: Mapping[str, FileState] = field(default_factory=dict)
    # Config files too big to keep -> their (key, value) list, None: unparseable. The others
    # are parsed from their kept bytes when they differ (``settings_of``).
    settings: Mapping[str, Settings | None] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)
    # Ids of the worktree admin dirs (``worktrees/<id>``); None when not known.
    worktrees: frozenset[str] | None = None
    ties: tuple[Ties, ...] = ()


def _read(path: str | Path) -> FileState | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        data = os.fsencode(os.readlink(path))
        return FileState(hashlib.sha256(b"link:" + data).hexdigest(), 0, True, data)
    if not stat.S_ISREG(st.st_mode):
        return None
    h = hashlib.sha256()
    kept = bytearray()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 16):
                h.update(chunk)
                if len(kept) <= MAX_KEPT:
                    kept += chunk
    except OSError:
        return None
    return FileState(h.hexdigest(), stat.S_IMODE(st.st_mode), False,
                     bytes(kept) if len(kept) <= MAX_KEPT else None)


def _walk(common: Path, rel: str, out: dict[str, FileState]) -> None:
    """Every file and symbolic link below ``common/rel`` (links are not followed; a directory
    replaced by a link is recorded as that link)."""
    base = os.fspath(common)
    top = os.path.join(base, rel)
    state = _read(top)
    if state is not None:
        out[rel] = state
        return
    if not os.path.isdir(top):
        return
    cut = len(base) + 1
    for root, dirs, files in os.walk(top):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]:
            full = os.path.join(root, name)
            s = _read(full)
            if s is not None:
                out[full[cut:]] = s


def _config_paths(common: Path) -> list[str]:
    paths = ["config", "config.worktree"]
    wts = common / "worktrees"
    if wts.is_dir():
        paths += sorted(f"worktrees/{d.name}/config.worktree" for d in wts.iterdir())
    return paths


def _parse(common: Path, data: bytes) -> Settings | None:
    """The settings in config bytes, as git reads them (``include.path`` is a key like any
    other: ``--file`` follows no include)."""
    proc = run_git(["config", "--file", "/dev/stdin", "--null", "--list"], cwd=common,
                   input=data, check=False)
    return None if proc.returncode != 0 else _split(proc.stdout)


def _settings(repo: Repo, path: Path) -> Settings | None:
    proc = run_git(["config", "--file", str(path), "--null", "--list"], cwd=repo.workdir,
                   check=False)
    return None if proc.returncode != 0 else _split(proc.stdout)


def _split(out: bytes) -> Settings:
    items: list[tuple[str, str | None]] = []
    for item in out.decode(errors="surrogateescape").split("\0"):
        if item:
            key, nl, value = item.partition("\n")
            items.append((key, value if nl else None))
    return tuple(items)


def settings_of(snap: Snapshot, path: str) -> Settings | None:
    """The settings of config file ``path`` in ``snap`` (None: not readable as git config)."""
    if path in snap.settings:
        return snap.settings[path]
    state = snap.files.get(path)
    if state is None or state.link or state.data is None:
        return None
    return _parse(snap.common_dir, state.data)


def ties_of(repo: Repo, worktree: Path) -> Ties:
    """The ties of ``worktree`` (a registered linked worktree; GitError otherwise)."""
    admin = admin_dir(repo, worktree).relative_to(repo.common_dir).as_posix()
    return Ties(admin, os.path.join(os.path.realpath(worktree), ".git"))


def _read_config(repo: Repo, rel: str, files: dict[str, FileState],
                 settings: dict[str, Settings | None]) -> None:
    state = _read(repo.common_dir / rel)
    if state is not None:
        files[rel] = state
        if state.data is None and not state.link:
            settings[rel] = _settings(repo, repo.common_dir / rel)


def _read_ties(common: Path, ties: tuple[Ties, ...], files: dict[str, FileState]) -> None:
    for t in ties:
        for key in t.paths():
            state = _read(common / key)
            if state is not None:
                files[key] = state


def _refs(repo: Repo) -> dict[str, str]:
    found = refs_outside(repo.common_dir, _OWN_REFS)
    if found is None:
        found = {r: o for r, o in for_each_ref(repo).items() if not r.startswith(_OWN_REFS)}
    return found


def snapshot(repo: Repo, ties: Iterable[Ties] = ()) -> Snapshot:
    """The repository's config files, ``info/``, ``hooks/``, refs outside ``refs/uet/``, and
    the ties of the worktrees named."""
    common = repo.common_dir
    files: dict[str, FileState] = {}
    settings: dict[str, Settings | None] = {}
    for rel in _config_paths(common):
        _read_config(repo, rel, files, settings)
    _walk(common, "info", files)
    _walk(common, "hooks", files)
    tied = tuple(ties)
    _read_ties(common, tied, files)
    wts = common / "worktrees"
    ids = frozenset(d.name for d in wts.iterdir() if d.is_dir()) if wts.is_dir() else frozenset()
    return Snapshot(common, files, settings, _refs(repo), ids, tied)


def worktree_snapshot(repo: Repo, ties: Ties) -> Snapshot:
    """Only one worktree's admin dir config (``config.worktree``) and its ties."""
    files: dict[str, FileState] = {}
    settings: dict[str, Settings | None] = {}
    _read_config(repo, f"{ties.admin}/config.worktree", files, settings)
    _read_ties(repo.common_dir, (ties,), files)
    return Snapshot(repo.common_dir, files, settings, {}, None, (ties,))


def narrowed(snap: Snapshot, ties: Iterable[Ties]) -> Snapshot:
    """``snap`` holding the ties of ``ties`` only (those it holds)."""
    keep = tuple(t for t in ties if t in snap.ties)
    drop = {k for t in snap.ties if t not in keep for k in t.paths()}
    return replace(snap, files={p: s for p, s in snap.files.items() if p not in drop},
                   ties=keep)


def with_ties(snap: Snapshot, ties: Ties) -> Snapshot:
    """``snap`` also holding ``ties`` as they are now (unchanged when it holds them already)."""
    if ties in snap.ties:
        return snap
    files = dict(snap.files)
    _read_ties(snap.common_dir, (ties,), files)
    return replace(snap, files=files, ties=(*snap.ties, ties))


# --------------------------------------------------------------------------- changes


def _short(oid: str | None) -> str:
    return (oid or "-")[:12]


def _full(oid: str | None) -> str:
    return oid or "-"


def _is_config(path: str) -> bool:
    return path in ("config", "config.worktree") or (
        path.startswith("worktrees/") and path.endswith("/config.worktree"))


def _by_key(items: tuple[tuple[str, str | None], ...]) -> dict[str, list[str | None]]:
    out: dict[str, list[str | None]] = {}
    for k, v in items:
        out.setdefault(k, []).append(v)
    return out


def _show(values: list[str | None]) -> str:
    shown = [("(no value)" if v is None else repr(v)) for v in values]
    return shown[0] if len(shown) == 1 else "[" + ", ".join(shown) + "]"


def _config_changes(path: str, before: Snapshot, after: Snapshot) -> list[str]:
    b = settings_of(before, path) if path in before.files else ()
    a = settings_of(after, path) if path in after.files else ()
    if b is None or a is None:
        return [f"{path}: changed (not readable as git config)"]
    kb, ka = _by_key(b or ()), _by_key(a or ())
    out = []
    for key in sorted(kb.keys() | ka.keys()):
        x, y = kb.get(key), ka.get(key)
        if x == y:
            continue
        if x is None:
            out.append(f"{path}: {key} set to {_show(y or [])}")
        elif y is None:
            out.append(f"{path}: {key} removed (was {_show(x)})")
        else:
            out.append(f"{path}: {key} changed from {_show(x)} to {_show(y)}")
    return out or [f"{path}: rewritten (same settings)"]


def _what(path: str) -> str:
    return f"hook {path.removeprefix('hooks/')}" if path.startswith("hooks/") else path


def _file_change(path: str, b: FileState | None, a: FileState | None) -> str:
    what = _what(path)
    if b is None:
        return f"{what} added" + (" (a symbolic link)" if a is not None and a.link else "")
    if a is None:
        return f"{what} removed"
    if b.link != a.link:
        return f"{what} replaced by a {'symbolic link' if a.link else 'file'}"
    if b.digest == a.digest:
        return f"{what} mode changed {b.mode:04o} -> {a.mode:04o}"
    return f"{what} changed"


def _changed_files(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths whose state differs, but the config of a worktree that was removed meanwhile
    (its whole admin dir went: ``git worktree remove``, uet's own pool included). The ties of
    the worktrees the snapshots were taken for always count."""
    tied = {k for t in before.ties for k in t.paths()}
    out = []
    for path in sorted(before.files.keys() | after.files.keys()):
        b, a = before.files.get(path), after.files.get(path)
        if b == a:
            continue
        if (a is None and path.startswith("worktrees/") and after.worktrees is not None
                and path.split("/")[1] not in after.worktrees and path not in tied):
            continue
        out.append(path)
    return out


def changes(before: Snapshot, after: Snapshot, *, ignore_refs: Collection[str] = (),
            full_oids: bool = False) -> list[str]:
    """One line per thing that differs: a config setting, a file in ``info/`` or ``hooks/``,
    a ref (created, deleted or moved; not those in ``ignore_refs``). Empty when nothing
    changed. A ref's oids are abbreviated unless ``full_oids`` (the tamper guard's evidence:
    ``uet land`` reads a ``ref REF moved OLD -> NEW`` line back and compares the oids)."""
    oid = _full if full_oids else _short
    out: list[str] = []
    for path in _changed_files(before, after):
        b, a = before.files.get(path), after.files.get(path)
        if _is_config(path) and b is not None and a is not None and not (b.link or a.link):
            out += _config_changes(path, before, after)
        elif _is_config(path) and b is None and a is not None and not a.link:
            out.append(f"{path} created")
            out += [ln for ln in _config_changes(path, before, after)
                    if not ln.endswith("(same settings)")]
        else:
            out.append(_file_change(path, b, a))
    for ref in sorted(before.refs.keys() | after.refs.keys()):
        x, y = before.refs.get(ref), after.refs.get(ref)
        if x == y or ref in ignore_refs:
            continue
        if x is None:
            out.append(f"ref {ref} created at {oid(y)}")
        elif y is None:
            out.append(f"ref {ref} deleted (was {oid(x)})")
        else:
            out.append(f"ref {ref} moved {oid(x)} -> {oid(y)}")
    return out


# --------------------------------------------------------------------------- restore


def _write(path: Path, state: FileState, *, lock: bool) -> None:
    """Put ``state`` at ``path`` atomically (a ``.lock`` sibling renamed over it: git's own
    protocol for config files, so a concurrent ``git config`` fails instead of losing ours)."""
    assert state.data is not None
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(21, "a directory is in its place", str(path))
    tmp = path.with_name(path.name + (".lock" if lock else ".uet-restore"))
    path.parent.mkdir(parents=True, exist_ok=True)
    if state.link:
        if not lock:
            tmp.unlink(missing_ok=True)
        os.symlink(os.fsdecode(state.data), tmp)
    else:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if lock else os.O_TRUNC)
        fd = os.open(tmp, flags, 0o600)
        try:
            os.write(fd, state.data)
            os.fchmod(fd, state.mode)
        finally:
            os.close(fd)
    os.replace(tmp, path)


def _restore_file(common: Path, rel: str, b: FileState | None, a: FileState | None
                  ) -> str:
    path = common / rel
    what = _what(rel)
    now = _read(path)
    if now != a:
        return f"{what} not restored: it changed again since the tool's run"
    try:
        if b is None:
            path.unlink()
            return f"{what} (added by the tool) removed"
        if b.data is None:
            return f"{what} not restored: its earlier content (over {MAX_KEPT} bytes) was not kept"
        if a is not None and not b.link and not a.link and a.digest == b.digest:
            os.chmod(path, b.mode)
        else:
            _write(path, b, lock=_is_config(rel))
    except OSError as exc:
        return f"{what} not restored: {exc.strerror or exc}"
    return f"{what} restored"


def _symbolic(repo: Repo, ref: str) -> str | None:
    proc = run_git(["symbolic-ref", "-q", ref], cwd=repo.workdir, check=False)
    return proc.stdout.decode(errors="surrogateescape").strip() or None


def _restore_ref(repo: Repo, ref: str, b: str | None, a: str | None) -> str:
    target = _symbolic(repo, ref)
    if target is not None:
        return f"ref {ref} not restored: it is a symbolic ref (to {target}) and follows it"
    tx = repo.transaction()
    if b is None:
        assert a is not None
        tx.delete(ref, a)
        done = f"ref {ref} (created by the tool) deleted"
    elif a is None:
        tx.create(ref, b)
        done = f"ref {ref} recreated at {_short(b)}"
    else:
        tx.update(ref, b, a)
        done = f"ref {ref} restored to {_short(b)}"
    try:
        tx.commit()
    except RefConflict:
        now = repo.read_ref(ref)
        return (f"ref {ref} not restored: it moved again since the tool's run "
                f"(now {_short(now)}, the tool left {_short(a)})")
    except GitError as exc:
        return f"ref {ref} not restored: {exc}"
    # Checked as `git for-each-ref` lists it (every line of packed-refs): on a packed-refs a
    # tool left out of order, git's update-ref looks the name up by bisection, misses it and
    # "deletes" nothing, exit 0.
    now = for_each_ref(repo, ref).get(ref)
    if now != b:
        return (f"ref {ref} not restored: git left it at {_short(now)} "
                f"(packed-refs out of order? `git pack-refs --all` after sorting it)")
    return done


def restore(repo: Repo, before: Snapshot, after: Snapshot, *,
            ignore_refs: Collection[str] = ()) -> list[str]:
    """Put back every config file, ``info/``/``hooks/`` file and ref (but those in
    ``ignore_refs``) that differs between ``before`` and ``after``, each only while it still
    holds its ``after`` value. One line per thing: what was restored, or why not."""
    common = repo.common_dir
    out: list[str] = []
    changed = _changed_files(before, after)
    # What the tool added goes first: a link it put where a directory was must be gone before
    # the directory's files come back.
    changed.sort(key=lambda p: (before.files.get(p) is not None, p))
    for rel in changed:
        out.append(_restore_file(common, rel, before.files.get(rel), after.files.get(rel)))
    refs = [r for r in before.refs.keys() | after.refs.keys()
            if before.refs.get(r) != after.refs.get(r) and r not in ignore_refs]
    # Deletions first, then moves, then re-creations: refs/heads/x and refs/heads/x/y cannot
    # both exist, so a tool's new ref may stand where a deleted one must come back.
    refs.sort(key=lambda r: (0 if r not in before.refs else 2 if r not in after.refs else 1, r))
    for ref in refs:
        out.append(_restore_ref(repo, ref, before.refs.get(ref), after.refs.get(ref)))
    return out


__all__ = ["MAX_KEPT", "FileState", "Snapshot", "Ties", "changes", "narrowed", "restore",
           "settings_of", "snapshot", "ties_of", "with_ties", "worktree_snapshot"]
