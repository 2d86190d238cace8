"""Linked worktrees uet creates for its workers (``git worktree add --detach``).

They live under the common git dir (``<common>/uet/worktrees/<slot>``), so the user's
``git status`` never sees them, and are reused: resetting one to a new base (``checkout -f`` +
``clean``) is ~60x cheaper than a fresh ``worktree add`` on a large repository. On a small
checkout the reset runs no git process when ``cleanat`` can prove the result: nothing to do
when the slot already is exactly at the commit, else libgit2's checkout from a slot exactly at
its own HEAD, checked afterwards; anything else is git's ``checkout -f`` + ``clean``.

A tool runs inside a worktree and may break it (replace its ``.git`` file, leave a merge or
rebase half done, leave an ``index.lock`` behind when killed). Everything here therefore finds a
worktree's administrative directory (``<common>/worktrees/<id>``) from the common dir, never by
discovery from inside the worktree, and ``reset_worktree`` repairs what a tool can break.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import filelock
import pygit2

from uet_git.gitrepo import handles
from uet_git.gitrepo.cleanat import (
    hides_entries,
    holds_only,
    index_paths,
    read_head,
    reset_clean,
    usable,
    write_head,
)
from uet_git.gitrepo.repo import GitError, Repo

ADMIN_LOCK_TIMEOUT = 120.0

# Per-worktree state a tool can leave behind; removed on reset (the tool is dead by then).
_STATE_FILES = (
    "MERGE_HEAD", "MERGE_MSG", "MERGE_MODE", "MERGE_RR", "AUTO_MERGE", "CHERRY_PICK_HEAD",
    "REVERT_HEAD", "BISECT_LOG", "BISECT_START", "BISECT_EXPECTED_REV", "BISECT_ANCESTORS_OK",
    "BISECT_NAMES", "BISECT_TERMS", "index.lock", "HEAD.lock", "ORIG_HEAD",
)
_STATE_DIRS = ("rebase-merge", "rebase-apply", "sequencer")


@contextlib.contextmanager
def _admin_lock(repo: Repo) -> Iterator[None]:
    """Serialise ``git worktree add/remove/list`` across threads and processes: git is not safe
    against itself here (two adds pick the same admin dir name; a list reads a half-made one).
    A new lock object per use, so threads exclude each other through their own descriptors."""
    lock = filelock.FileLock(str(repo.uet_dir / "worktree-admin.lock"), timeout=ADMIN_LOCK_TIMEOUT,
                             thread_local=False, is_singleton=False)
    try:
        with lock:
            yield
    except filelock.Timeout as exc:
        raise GitError(f"{repo.uet_dir / 'worktree-admin.lock'}: held by another process for "
                       f"{ADMIN_LOCK_TIMEOUT:g} s") from exc


@dataclass(frozen=True)
class WorktreeInfo:
    """One entry of ``git worktree list``."""

    path: Path
    head: str | None
    branch: str | None
    locked: bool
    prunable: bool
    bare: bool = False


def add_worktree(repo: Repo, path: Path, commit: str, *, lock_reason: str | None = None,
                 checkout: bool = True) -> None:
    """Create a detached worktree at ``path`` checked out at ``commit`` (with ``checkout=False``
    HEAD only, no index or files: the caller checks it out outside the admin lock).

    A path still registered from an earlier worktree whose directory is gone is taken over
    (``--force`` twice also overrides a lock). With ``lock_reason`` the worktree is created
    locked (``git worktree lock``), so ``git worktree prune``/``remove`` leave it alone.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise GitError(f"{path}: cannot create a worktree in a non-empty directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    for tries in range(ADD_RETRIES + 1):
        with _admin_lock(repo):
            args = ["worktree", "add", "--detach"]
            if _recorded(repo, path):
                args += ["--force", "--force"]
            if lock_reason:
                args += ["--lock", "--reason", lock_reason]
            if not checkout:
                args.append("--no-checkout")
            proc = repo.git(*args, str(path), commit, check=False)
            if proc.returncode == 0 and _registered(repo, path):
                return
            # ``git worktree prune`` (which every ``git gc`` runs) removed the admin dir
            # between git's mkdir and its first file (``locked``, ``gitdir``): git's lock
            # is not there yet, so prune takes the empty directory for a dead worktree.
            # git removes its half-made worktree on that failure; what it left is ours.
            raced = proc.returncode == 0 or _pruned_under_add(proc.stderr)
            if not raced or tries == ADD_RETRIES:
                break
            _remove_half_made(repo, path)
    if proc.returncode == 0:
        raise GitError(f"git worktree add {path}: its administrative directory was removed "
                       "while it was created (a concurrent `git worktree prune`)")
    raise GitError(f"git worktree add {path}: {_git_error(proc.stderr)}")


ADD_RETRIES = 5  # a `git worktree add` a concurrent prune broke is tried again this often


def _pruned_under_add(stderr: bytes) -> bool:
    """Whether ``git worktree add`` failed because its new admin dir vanished under it: git
    could not write a file into ``<common>/worktrees/<id>/`` (No such file or directory), or
    the checkout step found the admin dir gone ("not a git repository: .../worktrees/<id>")."""
    text = stderr.decode(errors="replace")
    return "worktrees/" in text and ("No such file or directory" in text
                                     or "not a git repository" in text)


def _registered(repo: Repo, path: Path) -> bool:
    """Whether ``path`` is a complete linked worktree: an admin dir whose ``gitdir`` names it
    and that holds its ``HEAD`` (a prune racing the add can leave one without)."""
    try:
        return (admin_dir(repo, path) / "HEAD").is_file()
    except GitError:
        return False


def _remove_half_made(repo: Repo, path: Path) -> None:
    """What a failed ``git worktree add`` of ``path`` left: an admin dir that names it, and
    the directory's content (it was empty or absent before: all of it is the add's)."""
    try:
        admin: Path | None = admin_dir(repo, path)
    except GitError:
        admin = None
    if admin is not None:
        shutil.rmtree(admin, ignore_errors=True)
    if path.is_dir():
        _make_writable(path)
        shutil.rmtree(path, ignore_errors=True)


# (common dir, worktree's .git path) -> its admin dir, as last found. Every use checks the
# cached dir's ``gitdir`` still names the worktree (one read) before trusting it, so an entry
# made stale by a remove, a prune or a re-add is never used: the scan runs again.
_ADMIN_CACHE: dict[tuple[Path, Path], Path] = {}


def admin_dir(repo: Repo, path: Path) -> Path:
    """The administrative directory (``<common>/worktrees/<id>``) of the worktree at ``path``.

    Found from the common dir's records, so it holds even when a tool replaced the worktree's
    ``.git`` file. Raises GitError when ``path`` is not a registered linked worktree."""
    target = Path(path).resolve() / ".git"
    key = (repo.common_dir, target)
    cached = _ADMIN_CACHE.get(key)
    if cached is not None and _names(cached, target):
        return cached
    base = repo.common_dir / "worktrees"
    if base.is_dir():
        # Sorted: two admin dirs naming one path (a half-made add) resolve as they always did.
        for d in sorted(base.iterdir()):
            if _names(d, target):
                _ADMIN_CACHE[key] = d
                return d
    _ADMIN_CACHE.pop(key, None)
    raise GitError(f"{path}: not a worktree of {repo.workdir}")


def _names(admin: Path, target: Path) -> bool:
    """Whether the admin dir ``admin`` records ``target`` (a worktree's ``.git``) as its own."""
    recorded = _gitdir(admin)
    # The same absolute path as written (what git writes, and ``target`` is resolved): no
    # resolve of both, which was most of a cached lookup.
    return recorded is not None and (recorded == target or _same(recorded, target))


def _gitdir(admin: Path) -> Path | None:
    """The worktree ``.git`` an admin dir records (what ``git worktree list`` reads), or None."""
    try:
        recorded = Path((admin / "gitdir").read_text().strip())
    except OSError:
        return None
    return recorded if recorded.is_absolute() else admin / recorded


def _recorded(repo: Repo, path: Path) -> bool:
    """Whether an admin dir still records ``path`` (``git worktree list`` would list it), its
    directory there or not: read in process instead of a ``git worktree list``."""
    target = Path(path).resolve() / ".git"
    base = repo.common_dir / "worktrees"
    return base.is_dir() and any(_names(d, target) for d in base.iterdir())


def vanished_worktrees(repo: Repo, under: Path) -> list[Path]:
    """Linked worktrees directly below ``under`` that are still registered but whose directory
    is gone (what ``git worktree list`` shows as prunable there), read in process."""
    base = repo.common_dir / "worktrees"
    found: list[Path] = []
    with _admin_lock(repo):  # never read an admin dir a concurrent add is half way through
        if not base.is_dir():
            return found
        for d in sorted(base.iterdir()):
            gitdir = _gitdir(d)
            if gitdir is not None and gitdir.name == ".git" and gitdir.parent.parent == under \
                    and not gitdir.parent.exists():
                found.append(gitdir.parent)
    return found


def repair_gitfile(repo: Repo, path: Path) -> Path:
    """Make ``path/.git`` the file pointing at the worktree's admin dir again (a tool may have
    deleted it or put a directory there: its content is never taken). Returns the admin dir."""
    admin = admin_dir(repo, path)
    gitfile = Path(path) / ".git"
    want = f"gitdir: {admin}\n"
    try:
        if gitfile.is_file() and not gitfile.is_symlink() and gitfile.read_text() == want:
            return admin
    except OSError:
        pass
    if gitfile.is_dir() and not gitfile.is_symlink():
        shutil.rmtree(gitfile)
    elif gitfile.exists() or gitfile.is_symlink():
        gitfile.unlink()
    gitfile.write_text(want)
    return admin


def reset_worktree(repo: Repo, path: Path, commit: str, keep_ignored: bool = False, *,
                   clean: bool = True) -> None:
    """Put the worktree at ``path`` exactly at ``commit``: detached HEAD, index and files as in
    the commit, untracked files gone; ignored files too unless ``keep_ignored`` (a ``.venv`` or
    ``node_modules`` then survives between uses). ``clean=False`` skips the ``git clean`` for
    a worktree that holds no file but its ``.git`` (just added with ``--no-checkout``)."""
    path = Path(path)
    admin = repair_gitfile(repo, path)
    _remove_state(admin)
    if clean and reset_clean(admin, path, repo.common_dir, commit, SMALL_CHECKOUT):
        return
    if hides_entries(admin, SMALL_CHECKOUT):
        (admin / "index").unlink(missing_ok=True)  # git rebuilds it, every file checked out
    proc = repo.git("checkout", "-q", "-f", "--detach", commit, cwd=path, check=False)
    if proc.returncode != 0:
        # A corrupt index or files the tool made read-only: rebuild the index, retry once.
        _make_writable(path)
        (admin / "index").unlink(missing_ok=True)
        repo.git("checkout", "-q", "-f", "--detach", commit, cwd=path)
    # No ``reset --hard`` after it: ``checkout -f`` already resets index and files with the
    # same one-way merge (unmerged entries, assume-unchanged and files in the way included), and
    # a second pass cost ~7 ms a reset under load, twice per workstream.
    if not clean or _holds_only_tracked(admin, path):
        return
    args = ["clean", "-q", "-ffd" if keep_ignored else "-ffdx"]
    if repo.git(*args, cwd=path, check=False).returncode != 0:
        _make_writable(path)  # a directory the tool made unwritable
        repo.git(*args, cwd=path)


SMALL_CHECKOUT = 2000  # index entries up to which work in process beats a git process


def _remove_state(admin: Path) -> None:
    """Remove what ``_STATE_FILES``/``_STATE_DIRS`` name in the admin dir: one listing of it,
    then only what it holds (the tool is dead by now: nothing adds to it meanwhile)."""
    try:
        present = set(os.listdir(admin))
    except OSError:
        present = set(_STATE_FILES) | set(_STATE_DIRS)  # let each removal say what it finds
    for name in _STATE_FILES:
        if name in present:
            (admin / name).unlink(missing_ok=True)
    for name in _STATE_DIRS:
        if name in present:
            shutil.rmtree(admin / name, ignore_errors=True)


def _small_index(admin: Path) -> bool:
    """Whether the worktree's index has at most ``SMALL_CHECKOUT`` entries, read from its
    header (``DIRC``, version, entry count): libgit2 takes ~0.1 s just to load an index of
    30,000 entries, more than the git process it would replace."""
    try:
        with open(admin / "index", "rb") as f:
            header = f.read(12)
    except OSError:
        return False
    return (len(header) == 12 and header[:4] == b"DIRC"
            and int.from_bytes(header[8:12], "big") <= SMALL_CHECKOUT)


def _holds_only_tracked(admin: Path, path: Path) -> bool:
    """Whether the worktree holds nothing but its index's paths (and their directories), so a
    ``git clean`` would have nothing to remove: a walk in process (~1 ms at 100 files) instead
    of a git process. Anything else it meets (an untracked or ignored file, an empty or
    untracked directory, a nested repository, a name it cannot compare), an index it cannot
    read, or a large checkout (git's clean is faster there): False, and git cleans."""
    files = index_paths(admin, SMALL_CHECKOUT)
    return files is not None and holds_only(path, files)


def _make_writable(path: Path) -> None:
    """Give the owner rwx on every directory below ``path`` (not following symlinks)."""
    for root, dirs, _files in os.walk(path):
        for d in dirs:
            p = Path(root) / d
            if not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.chmod(p.stat().st_mode | 0o700)


def remove_worktree(repo: Repo, path: Path) -> None:
    """Remove the worktree at ``path`` (even locked or dirty) and its administrative data."""
    path = Path(path)
    try:
        admin = admin_dir(repo, path)
    except GitError:
        admin = None
    with _admin_lock(repo):
        if admin is not None and path.exists():
            repair_gitfile(repo, path)
            proc = repo.git("worktree", "remove", "--force", "--force", str(path), check=False)
            if proc.returncode == 0:
                return
        if path.exists():
            _make_writable(path)
            shutil.rmtree(path)
        if admin is not None and admin.exists():
            # What `git worktree prune` does for this one entry, without touching the user's.
            shutil.rmtree(admin)


def list_worktrees(repo: Repo) -> list[WorktreeInfo]:
    """Every worktree of the repository (the main one first), from ``git worktree list``."""
    with _admin_lock(repo):
        return _list_worktrees(repo)


def _list_worktrees(repo: Repo) -> list[WorktreeInfo]:
    out = repo.git("worktree", "list", "--porcelain", "-z").stdout.decode(errors="surrogateescape")
    result: list[WorktreeInfo] = []
    cur: dict[str, str] = {}

    def flush() -> None:
        if "worktree" in cur:
            branch = cur.get("branch")
            result.append(WorktreeInfo(
                path=Path(cur["worktree"]), head=cur.get("HEAD"),
                branch=branch.removeprefix("refs/heads/") if branch else None,
                locked="locked" in cur, prunable="prunable" in cur, bare="bare" in cur,
            ))
        cur.clear()

    for field in out.split("\0"):
        if not field:
            flush()
            continue
        key, _, value = field.partition(" ")
        cur[key] = value
    flush()
    return result


def worktree_head(repo: Repo, path: Path) -> str | None:
    """The commit the worktree's HEAD points to (read from its admin dir), or None."""
    admin = admin_dir(repo, path)
    detached = read_head(admin)
    if detached is not None and _is_commit(repo, detached):
        return detached  # a detached HEAD (every slot's): its file is all there is to read
    try:
        if (admin / "HEAD").is_symlink():
            raise ValueError("HEAD is a symbolic link: git reads it its own way")
        # In process (~0.3 ms) instead of a git process (~3 ms); the CLI decides whenever
        # libgit2 cannot (a reftable repository, a HEAD it does not understand).
        with handles.opened(admin) as wr:
            if wr.head_is_unborn:
                return None
            return str(wr.head.peel(pygit2.Commit).id)
    except handles.IN_PROCESS_ERRORS:
        pass
    proc = repo.git("--git-dir", str(admin), "rev-parse", "--verify", "--quiet", "HEAD^{commit}",
                    check=False)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def _is_commit(repo: Repo, oid: str) -> bool:
    """Whether ``oid`` names a commit in the repository's object database (git peels nothing
    else the way HEAD is read here: a tag or a missing object is left to libgit2 and git)."""
    try:
        obj = repo._pg.get(oid)
    except (pygit2.GitError, ValueError):
        return False
    return obj is not None and obj.type == pygit2.enums.ObjectType.COMMIT


def dirty_paths(repo: Repo, path: Path) -> list[str]:
    """Paths that differ from the worktree's HEAD: modified, staged, deleted and untracked (not
    ignored) files, both sides of a rename. Empty when the worktree is clean."""
    path = Path(path)
    admin = repair_gitfile(repo, path)
    proc = repo.git("--no-optional-locks", "--git-dir", str(admin), "--work-tree", str(path),
                    "status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames",
                    cwd=path)
    paths: set[str] = set()
    for entry in proc.stdout.decode(errors="surrogateescape").split("\0"):
        if len(entry) > 3:
            paths.add(entry[3:])
    return sorted(paths)


def _git_error(stderr: bytes) -> str:
    """git's error line (``fatal:``/``error:``), not its progress chatter."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))),
                 lines[-1] if lines else "failed")
    return first.removeprefix("fatal: ").removeprefix("error: ")


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def pin_head(repo: Repo, worktree: Path, commit: str) -> None:
    """Point the worktree's HEAD (detached) at ``commit`` and nothing else (index and files
    stay): a worktree's HEAD is a gc root, so a commit no ref names yet survives a
    ``git gc --prune=now`` that starts from now on (``git worktree prune`` leaves a locked
    worktree alone)."""
    admin = repair_gitfile(repo, Path(worktree))
    if _set_head_in_process(admin, commit):
        return
    repo.git("--git-dir", str(admin), "update-ref", "--no-deref", "HEAD", commit)


def _reset_index_in_process(admin: Path, path: Path, commit: str) -> bool:
    """``reset_index`` with libgit2, when the worktree's files already are ``commit``'s tree
    (the patch just snapshotted from them): the index takes the files as ``git add -A`` would
    (its stat cache re-hashes only what changed) and is written only if its tree is exactly
    ``commit``'s; then HEAD is detached there. False (nothing written) whenever that does not
    hold, the checkout is large, or libgit2 cannot (filter drivers, a conflicted or corrupt
    index): ``git reset``."""
    if not _small_index(admin):
        return False  # at 30,000 files git's reset is ~2x faster than add_all + write
    try:
        with handles.opened(admin) as wr:
            return _index_to(wr, admin, path, commit)
    except handles.IN_PROCESS_ERRORS:
        return False


def _index_to(wr: pygit2.Repository, admin: Path, path: Path, commit: str) -> bool:
    """``_reset_index_in_process`` on the worktree's opened repository."""
    if not usable(wr, path):
        return False  # not this worktree, or a filter driver libgit2 would not run
    want = wr.get(commit)
    if not isinstance(want, pygit2.Commit):
        return False
    index = wr.index
    if index.conflicts is not None:
        return False
    index.add_all()
    if index.write_tree() != want.tree_id:
        return False
    index.write()
    if not write_head(admin, commit):
        wr.set_head(want.id)
    return str(wr.head.target) == commit


def _set_head_in_process(admin: Path, commit: str) -> bool:
    """Detach the worktree's HEAD at ``commit`` in process (a locked write of ``<admin>/HEAD``,
    as ``git update-ref --no-deref`` does: ``write_head``, else libgit2) instead of a git
    process; False when neither can (a reftable repository, a HEAD libgit2 does not
    understand, a held lock): the caller runs git."""
    if write_head(admin, commit):
        return True
    try:
        with handles.opened(admin) as wr:
            wr.set_head(pygit2.Oid(hex=commit))
            return str(wr.head.target) == commit and not wr.head_is_unborn
    except handles.IN_PROCESS_ERRORS:
        return False


def reset_index(repo: Repo, worktree: Path, commit: str) -> None:
    """Point the worktree's HEAD (detached) and index at ``commit``, leaving its files as they
    are (``git reset -q COMMIT``): cheap when the files already are ``commit``'s. When git
    refuses (a tool broke the index or HEAD), the full ``reset_worktree`` repairs it, keeping
    ignored files."""
    path = Path(worktree)
    admin = repair_gitfile(repo, path)
    if _reset_index_in_process(admin, path, commit):
        return
    proc = repo.git("--git-dir", str(admin), "--work-tree", str(path), "reset", "-q", commit,
                    "--", cwd=path, check=False)
    if proc.returncode != 0:
        reset_worktree(repo, path, commit, keep_ignored=True)
