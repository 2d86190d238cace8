"""Landing on a branch like ``git merge --ff-only``, stricter, and recoverable after a kill.

``fast_forward(repo, ref, old, new)`` moves ``ref`` from ``old`` to ``new`` with a
compare-and-swap and updates every checkout that has ``ref`` checked out (the main worktree and
linked ones) the way ``git read-tree -m -u old new`` does: only the paths the landing changes
are written, so unrelated local changes (unstaged, staged, a dirty submodule) stay byte for
byte. It refuses (``ff_blockers``, one line each) where git would be careless or break something:
a local change to a landed path, an ignored or untracked file where the landing puts a file
(``read-tree -m -u`` silently replaces an ignored one), a rebase, merge, cherry-pick, revert,
bisect or ``git am`` in progress, a held ``index.lock``.

Order, chosen so a crash at any point is recoverable and a lost race changes nothing:

1. per checkout, take ``<gitdir>/index.lock`` (git's own lock: no other git writes the index
   while we work, and a user's ``git commit`` in the window fails instead of committing a mix),
   and copy the index (mtime kept: git's racy-entry check compares against it) to
   ``<gitdir>/uet-ff-index``; then look at the blockers again (a file created since the first
   look is not overwritten): in process when the copy settles it (``_clean_by_index``), else
   ``git status`` reading the copy and refreshing its stat data;
2. run ``read-tree -m -u old new`` on that copy (``GIT_INDEX_FILE``): git checks every entry
   and writes the files; the real index is still the one at ``old``;
3. CAS ``ref: old -> new``; on failure (or an exception, Ctrl-C included) every checkout goes
   back to ``old`` path by path from the real index, which was never replaced;
4. per checkout, rename the copy onto ``index.lock`` and ``index.lock`` onto ``index`` (git's
   commit of a lock), which also releases the lock.

Files before the ref: a lost race then never leaves a branch whose checkout shows the inverse
of the landing as local changes. A kill leaves: the lock (steps 1-4), files half at ``new``
(step 2), a ref at ``new`` with an index at ``old`` (between 3 and 4). ``recover`` makes every
checkout agree with wherever the ref is, path by path, by content (hashed raw, then as
``git add`` would through autocrlf or a filter), never touching a file that holds neither
side's version (the user's) and never going through a symbolic link.

Every git started in a user's checkout goes through ``Repo.git`` (filter drivers pinned to the
trusted ones), with hooks and fsmonitor off; those that run no filter (``ls-files``,
``check-ignore``, ``rev-parse``) may go through ``run_git``. A checkout's git dir and a HEAD
that names the branch are read in process when laid out the way git makes them; git is asked
about anything else (``git_dir_of``, ``_head_oid``). The first look (``look``) is taken once
per move: ``journal.journaled_move`` takes it before recording the intent and hands it on.

Crash points for the fault-injection tests: when the environment variable ``UET_BRANCH_CRASH``
names one, the process ends with ``os._exit(137)`` there (as a ``kill -9`` would):

- ``after-index-lock``: the first checkout's ``index.lock`` was just taken;
- ``mid-checkout``: half the changed paths are written (the update then runs as two
  ``read-tree`` steps through an intermediate tree, which leaves what a kill inside git's own
  checkout leaves: some files new, the real index old);
- ``before-ref``: every checkout's files are at ``new``, the ref still at ``old``;
- ``after-ref``: the ref moved, no index committed yet;
- ``mid-index-commit``: the first checkout's new index sits in ``index.lock``, not yet renamed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.ffi import C, ffi

from uet_git.gitrepo.merge import is_ancestor
from uet_git.gitrepo.objects import peel_tree
from uet_git.gitrepo.refs import ZERO_OID, RefConflict
from uet_git.gitrepo.repo import GitError, Repo, run_git
from uet_git.gitrepo.worktrees import admin_dir, list_worktrees

CRASH_ENV = "UET_BRANCH_CRASH"
CRASH_POINTS = ("after-index-lock", "mid-checkout", "before-ref", "after-ref", "mid-index-commit")
TMP_INDEX = "uet-ff-index"
# uet's git in a user's checkout never runs a program a tool could have planted in config.
_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
_GITLINK = 0o160000
_TREE = 0o040000
_LINK = 0o120000

_Ent = tuple[str, int]  # (oid, mode)


@dataclass(frozen=True)
class FFResult:
    moved: bool
    updated_checkouts: list[Path]
    problem: str | None


def crash_point(name: str) -> None:
    """End the process here when ``UET_BRANCH_CRASH`` names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(137)


def _short(oid: str | None) -> str:
    return (oid or "-")[:12]


def _a(op: str) -> str:
    return f"{'an' if op[0] in 'aeiou' else 'a'} {op}"


def _names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return f"{shown} and {len(paths) - limit} more" if len(paths) > limit else shown


def _git(repo: Repo, checkout: Path, *args: str, env: dict[str, str] | None = None,
         input: bytes | None = None, check: bool = True) -> bytes:
    """git in a checkout through ``Repo.git``: filter drivers stay pinned to the trusted ones
    (status, read-tree -u, checkout-index and hash-object run filters)."""
    return repo.git(*_SAFE, *args, cwd=checkout, env=env, input=input, check=check).stdout


def git_dir_of(checkout: Path, repo: Repo | None = None) -> Path:
    """The (per-worktree) git directory of a checkout: where its index, HEAD and the state of
    a rebase or merge live. With ``repo``, a checkout laid out the way git makes one (see
    ``_plain_git_dir``) is answered in process; anything else is git's answer."""
    if repo is not None:
        found = _plain_git_dir(repo, Path(checkout))
        if found is not None:
            return found
    out = run_git([*_SAFE, "rev-parse", "--absolute-git-dir"], cwd=checkout).stdout
    return Path(out.decode(errors="surrogateescape").strip())


# Set in the environment, these make git look elsewhere than ``<checkout>/.git``.
_DISCOVERY_ENV = ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE")


def _plain_git_dir(repo: Repo, checkout: Path) -> Path | None:
    """What ``git rev-parse --absolute-git-dir`` says in ``checkout``, without starting it, when
    the answer is certain: ``<checkout>/.git`` is the repository's own git dir (a directory, or a
    ``gitdir:`` file naming it), or a ``gitdir:`` file naming an admin dir under the common
    dir's ``worktrees/`` that records this very ``.git`` back and holds a ``HEAD`` and a
    ``commondir`` (what git checks before it takes one). None (ask git) on anything else: a
    symbolic link, a file of another form, a git dir outside the repository, a ``.git`` owned
    by another user (git may refuse it as unsafe), a git dir chosen by the environment."""
    if any(k in os.environ for k in _DISCOVERY_ENV):
        return None
    dotgit = checkout / ".git"
    try:
        st = dotgit.lstat()
        if st.st_uid != os.geteuid():
            return None
        if dotgit.is_symlink():
            return None
        if dotgit.is_dir():
            return repo.common_dir if dotgit.resolve() == repo.common_dir else None
        data = dotgit.read_bytes()
    except OSError:
        return None
    m = re.fullmatch(rb"gitdir: (/[^\n\r]*[^\s])\n?", data)
    if m is None:
        return None
    try:
        target = Path(os.fsdecode(m.group(1))).resolve(strict=True)
        if target == repo.common_dir:
            return target
        if target.parent != repo.common_dir / "worktrees" or not target.is_dir() \
                or _head_text(target) is None:
            return None
        common = (target / "commondir").read_text(errors="surrogateescape").strip()
        recorded = (target / "gitdir").read_text(errors="surrogateescape").strip()
        if (target / common).resolve() != repo.common_dir \
                or Path(recorded).resolve() != dotgit.resolve():
            return None
    except OSError:
        return None
    return target


_HEAD_FORM = re.compile(r"ref: refs/[^\s]+\n|[0-9a-f]{40}\n")


def _head_text(gitdir: Path) -> str | None:
    """``<gitdir>/HEAD`` when it is a regular file of the two forms git writes (a symbolic ref
    to a ref under ``refs/``, or an object id), else None."""
    head = gitdir / "HEAD"
    try:
        if head.is_symlink():
            return None
        text = head.read_text(errors="surrogateescape")
    except OSError:
        return None
    return text if _HEAD_FORM.fullmatch(text) else None


# --------------------------------------------------------------------------- checkouts


def checkouts_of(repo: Repo, ref: str) -> list[Path]:
    """Every existing worktree (main or linked) with ``ref`` checked out, uet's own pool aside.

    A worktree in the middle of rebasing or bisecting ``ref`` counts (its HEAD is detached, but
    the branch is in use, as ``git branch -f`` sees it): moving the ref under it would break
    the user's rebase."""
    branch = ref.removeprefix("refs/heads/")
    if branch == ref:
        return []  # only a branch can be checked out
    listed = _worktrees_in_process(repo)
    if listed is None:
        return _checkouts_by_git(repo, ref)
    return [p for p, on, gd in listed
            if p.is_dir() and (on == branch or (on is None and _busy_with(gd, ref)))]


def _branch_named(head: str) -> str | None:
    """What ``git worktree list`` says a HEAD file (``_head_text``) has checked out: the branch's
    short name (a ref outside ``refs/heads/`` in full), None when detached."""
    if not head.startswith("ref: "):
        return None
    return head[5:].strip().removeprefix("refs/heads/")


def _worktrees_in_process(repo: Repo) -> list[tuple[Path, str | None, Path]] | None:
    """``(path, branch or None, git dir)`` of each worktree ``checkouts_of`` looks at, read from
    the files ``git worktree list`` reads, main first, uet's own pool left out; None (ask git)
    on any layout not read here as git reads it: a git dir not at ``<main>/.git``, a HEAD of
    another form, a worktree whose ``.git`` is gone (prunable, or kept by a lock), a recorded
    path that is relative or does not end in ``/.git``, an unreadable admin dir. An admin dir
    without a ``gitdir`` record is skipped, as git skips it (a ``worktree add`` half-made)."""
    common = repo.common_dir
    if repo.bare or common.name != ".git" or common.parent != repo.workdir:
        return None
    main = _head_text(common)
    if main is None:
        return None
    out = [(repo.workdir, _branch_named(main), common)]
    base = common / "worktrees"
    own = (common / "uet").resolve()
    try:
        ids = sorted(os.listdir(base)) if base.is_dir() else []
    except OSError:
        return None
    for wt_id in ids:
        admin = base / wt_id
        try:
            recorded = (admin / "gitdir").read_text(errors="surrogateescape").rstrip()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return None
        if not recorded:
            continue  # git lists no worktree for an empty record either
        if not recorded.startswith("/") or not recorded.endswith("/.git"):
            return None
        path = Path(recorded).parent.resolve()
        if own in path.parents:
            continue
        head = _head_text(admin)
        if head is None or not os.path.exists(recorded):
            return None
        out.append((path, _branch_named(head), admin))
    return out


def _checkouts_by_git(repo: Repo, ref: str) -> list[Path]:
    """``checkouts_of`` from ``git worktree list``."""
    branch = ref.removeprefix("refs/heads/")
    own = (repo.common_dir / "uet").resolve()
    found: list[Path] = []
    for i, info in enumerate(list_worktrees(repo)):
        if info.bare or info.prunable:
            continue
        p = Path(info.path).resolve()
        if own in p.parents or not p.is_dir():
            continue
        if info.branch == branch:
            found.append(p)
        elif info.branch is None:
            gd = repo.common_dir if i == 0 else _admin_dir(repo, p)
            if gd is not None and _busy_with(gd, ref):
                found.append(p)
    return found


def _admin_dir(repo: Repo, path: Path) -> Path | None:
    try:
        return admin_dir(repo, path)
    except GitError:
        return None


def _busy_with(gitdir: Path, ref: str) -> bool:
    """True when the detached worktree at ``gitdir`` is rebasing or bisecting ``ref``."""
    for f in ("rebase-merge/head-name", "rebase-apply/head-name", "BISECT_START"):
        try:
            name = (gitdir / f).read_text(errors="surrogateescape").strip()
        except OSError:
            continue
        if name in (ref, ref.removeprefix("refs/heads/")):
            return True
    return False


def in_progress(checkout: Path, gitdir: Path | None = None) -> str | None:
    """The operation the checkout is in the middle of (``rebase``, ``merge``, ``cherry-pick``,
    ``revert``, ``bisect``, ``am``), or None. ``gitdir``: its git dir, when known."""
    gd = gitdir if gitdir is not None else git_dir_of(checkout)
    if (gd / "rebase-merge").is_dir():
        return "rebase"
    if (gd / "rebase-apply").is_dir():
        return "am" if (gd / "rebase-apply" / "applying").exists() else "rebase"
    for name, op in (("MERGE_HEAD", "merge"), ("CHERRY_PICK_HEAD", "cherry-pick"),
                     ("REVERT_HEAD", "revert")):
        if (gd / name).exists():
            return op
    if (gd / "sequencer").is_dir():
        return "cherry-pick or revert sequence"
    if (gd / "BISECT_LOG").exists():
        return "bisect"
    return None


# --------------------------------------------------------------------------- tree changes


def _tree_changes(repo: Repo, a: str, b: str) -> dict[str, tuple[_Ent | None, _Ent | None]]:
    """``{path: (entry in a, entry in b)}`` for every non-tree path that differs, equal
    subtrees skipped (O(changes x depth)). Paths are file-system strings (surrogateescape)."""
    out: dict[str, tuple[_Ent | None, _Ent | None]] = {}
    _walk(peel_tree(repo, a), peel_tree(repo, b), "", out)
    return out


def _walk(ta: pygit2.Tree | None, tb: pygit2.Tree | None, prefix: str,
          out: dict[str, tuple[_Ent | None, _Ent | None]]) -> None:
    ea = {os.fsdecode(e.raw_name): e for e in ta} if ta is not None else {}
    eb = {os.fsdecode(e.raw_name): e for e in tb} if tb is not None else {}
    for name in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(name), eb.get(name)
        if x is not None and y is not None and x.id == y.id and x.filemode == y.filemode:
            continue
        path = prefix + name
        xt = x if x is not None and x.filemode == _TREE else None
        yt = y if y is not None and y.filemode == _TREE else None
        if xt is not None or yt is not None:
            _walk(xt, yt, path + "/", out)  # type: ignore[arg-type]
        xe = (str(x.id), int(x.filemode)) if x is not None and xt is None else None
        ye = (str(y.id), int(y.filemode)) if y is not None and yt is None else None
        if xe is not None or ye is not None:
            out[path] = (xe, ye)


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


# --------------------------------------------------------------------------- blockers


def _in_region(path: str, changes: Mapping[str, object], landed: set[str]) -> bool:
    """Whether a local change at ``path`` is one the landing would overwrite: a changed path,
    a directory above one, or a path below one."""
    return path in landed or any(d in changes for d in _prefixes(path))


def _landed_paths(changes: Mapping[str, object]) -> set[str]:
    landed = set(changes)
    for p in changes:
        landed.update(_prefixes(p))
    return landed


# git's index entry flags that make status answer other than by stat data: assume-valid, and
# (extended) intent-to-add, skip-worktree.
_ASSUME_VALID = 0x8000


def _clean_by_index(repo: Repo, checkout: Path, gitdir: Path, old: str,
                    changes: dict[str, tuple[_Ent | None, _Ent | None]],
                    path: Path | None = None) -> bool:
    """True when ``git status`` would certainly report no local change where the landing
    ``old -> new`` writes, decided without starting it: the index (read by libgit2) holds
    ``old``'s entries there and nothing else, and each such file's stat data is exactly what
    the index recorded, older than the index file (git's racy-entry rule, taken by the whole
    second). False means: ask git. A submodule, an unmerged index, an entry with a flag, a
    layout libgit2 does not read (split or sparse index) or an index replaced meanwhile are
    all left to git. ``path``: the index file (default: the checkout's own).

    A wrong "clean" would still lose nothing: ``read-tree -m -u`` checks each entry it
    replaces against the file (stat data, content when racy) and against ``old``, and
    refuses (a file the user deleted it writes back: there is no content of theirs to lose)."""
    if any(e is not None and e[1] == _GITLINK for pair in changes.values() for e in pair):
        return False
    path = path if path is not None else gitdir / "index"
    try:
        if not _libgit2_reads(gitdir):
            return False
        before = path.stat()
        index = _open_index(path)
        after = path.stat()
    except (OSError, pygit2.GitError, ValueError):
        return False
    if index is None:
        return False
    if (before.st_ino, before.st_mtime_ns, before.st_size) != \
            (after.st_ino, after.st_mtime_ns, after.st_size):
        return False
    if index.conflicts is not None:
        return False
    landed = _landed_paths(changes)
    try:
        staged = peel_tree(repo, old).diff_to_index(index)
    except (pygit2.GitError, ValueError):
        return False
    for delta in staged.deltas:
        for q in (delta.old_file.path, delta.new_file.path):
            if _in_region(q, changes, landed):
                return False
    racy_from = before.st_mtime_ns // 1_000_000_000
    for p, (o, _n) in changes.items():
        entry = C.git_index_get_bypath(index._index, os.fsencode(p), 0)
        if o is None:
            if entry != ffi.NULL:
                return False  # an entry the tree diff does not show (intent-to-add)
            continue
        if entry == ffi.NULL or entry.flags & _ASSUME_VALID or entry.flags_extended:
            return False
        if _entry(index, p) != o:
            return False
        try:
            st = os.lstat(checkout / p)
        except OSError:
            return False
        if o[1] == _LINK:
            if not stat.S_ISLNK(st.st_mode):
                return False
        elif not stat.S_ISREG(st.st_mode) or bool(st.st_mode & 0o100) != (o[1] == 0o100755):
            return False
        m_sec, m_ns = divmod(st.st_mtime_ns, 1_000_000_000)
        c_sec, c_ns = divmod(st.st_ctime_ns, 1_000_000_000)
        if m_sec >= racy_from:
            return False
        if (entry.mtime.seconds, entry.mtime.nanoseconds, entry.ctime.seconds,
                entry.ctime.nanoseconds, entry.dev, entry.ino, entry.uid, entry.gid,
                entry.file_size) != tuple(v & 0xFFFFFFFF for v in (
                    m_sec, m_ns, c_sec, c_ns, st.st_dev, st.st_ino, st.st_uid, st.st_gid,
                    st.st_size)):
            return False
    return True


def _libgit2_reads(gitdir: Path) -> bool:
    """Whether libgit2 reads the indexes in ``gitdir`` as git does: not a split index (its
    entries partly in ``sharedindex.*``), not a sparse checkout (whose index may hold
    directories)."""
    return not (gitdir / "info" / "sparse-checkout").exists() \
        and not any(n.startswith("sharedindex.") for n in os.listdir(gitdir))


def _open_index(path: Path) -> pygit2.Index | None:
    """The index file at ``path`` as libgit2 reads it, or None when it cannot. Opened with the
    C call: on a failure pygit2's constructor leaves an object that prints a traceback to
    stderr when it is collected."""
    ptr = ffi.new("git_index **")
    if C.git_index_open(ptr, os.fsencode(path)) != 0:
        return None
    return pygit2.Index.from_c(None, ptr)


def _entry(index: pygit2.Index, path: str) -> _Ent | None:
    """The stage-0 entry of ``path`` in ``index`` (None: none, or only unmerged stages)."""
    e = C.git_index_get_bypath(index._index, os.fsencode(path), 0)
    if e == ffi.NULL:
        return None
    return str(pygit2.Oid(raw=bytes(ffi.buffer(e.id.id)[:]))), int(e.mode)


def _local_changes(repo: Repo, checkout: Path, held: _Held | None = None) -> set[str]:
    """Paths with tracked changes, staged or not (submodules included). Without ``held``, the
    index is only read (``--no-optional-locks``: git does not take its lock). With ``held``
    (the lock is ours), git reads the copy of the index we work on, and refreshes it as it
    goes: the stat data ``read-tree -m -u`` trusts is then current, as after
    ``update-index --refresh`` (``GIT_OPTIONAL_LOCKS=1``: whatever the user's environment
    says, the refreshed copy is written)."""
    lead = () if held is not None else ("--no-optional-locks",)
    env = {**held.env, "GIT_OPTIONAL_LOCKS": "1"} if held is not None else None
    out = repo.git(*lead, *_SAFE, "status", "--porcelain=v1", "-z", "--untracked-files=no",
                   "--ignore-submodules=none", "--no-renames", cwd=checkout, env=env).stdout
    return {os.fsdecode(item[3:]) for item in out.split(b"\0") if len(item) > 3}


def _index_paths(checkout: Path) -> set[str]:
    out = run_git(["--no-optional-locks", *_SAFE, "ls-files", "-z", "--cached"],
                  cwd=checkout).stdout
    return {os.fsdecode(p) for p in out.split(b"\0") if p}


def _in_the_way(repo: Repo, checkout: Path, old: str,
                changes: dict[str, tuple[_Ent | None, _Ent | None]],
                local: set[str]) -> list[str]:
    """Untracked or ignored paths on disk where the landing puts a file or a directory."""
    old_tree = peel_tree(repo, old)
    added = [p for p, (o, n) in changes.items() if o is None and n is not None]
    in_way: set[str] = set()
    index: set[str] | None = None

    def old_kind(path: str) -> int | None:
        try:
            return int(old_tree[path].filemode)
        except KeyError:
            return None

    checked: set[str] = set()
    for path in added:
        for d in _prefixes(path):
            if d in checked:
                continue
            checked.add(d)
            if old_kind(d) is not None:
                continue  # tracked at old: its own change (if any) is in ``changes``
            full = checkout / d
            if full.is_symlink() or (full.exists() and not full.is_dir()):
                in_way.add(d)
        if path in local:
            continue  # a staged add: reported as a local change
        full = checkout / path
        if not (full.is_symlink() or full.exists()):
            continue
        if full.is_dir() and not full.is_symlink():
            if old_kind(path) == _TREE or old_kind(path) == _GITLINK:
                # A tracked directory turns into a file: what in it is not tracked is in the way.
                if index is None:
                    index = _index_paths(checkout)
                for root, _dirs, files in os.walk(full):
                    for f in files:
                        rel = os.path.relpath(os.path.join(root, f), checkout)
                        if rel not in index:
                            in_way.add(rel)
            elif any(full.iterdir()):
                in_way.add(path)
            continue
        in_way.add(path)
    return sorted(in_way)


def _ignored(checkout: Path, paths: list[str]) -> set[str]:
    if not paths:
        return set()
    data = b"".join(os.fsencode(p) + b"\0" for p in paths)
    out = run_git(["--no-optional-locks", *_SAFE, "check-ignore", "-z", "--stdin"], cwd=checkout,
                  input=data, check=False).stdout
    return {os.fsdecode(p) for p in out.split(b"\0") if p}


def ff_blockers(repo: Repo, checkout: Path, old: str, new: str, *, ref: str | None = None
                ) -> list[str]:
    """What keeps a fast-forward ``old -> new`` from updating ``checkout``, one line each
    (empty: it may land). Local changes to other paths never block. ``ref``: the branch the
    caller has just read at ``old`` (a HEAD that names it is then known to be at ``old``)."""
    checkout = Path(checkout)
    return _blockers(repo, checkout, git_dir_of(checkout, repo), old, new,
                     _tree_changes(repo, old, new), ref=ref)


@dataclass(frozen=True)
class Look:
    """A first look at a fast-forward ``ref: old -> new`` (``look``): the checkouts of ``ref``,
    their git dirs, the paths the landing changes, and what blocks it, one line each."""

    ref: str
    old: str
    new: str
    checkouts: list[Path]
    gitdirs: list[Path]
    changes: dict[str, tuple[_Ent | None, _Ent | None]]
    problems: list[str]


def look(repo: Repo, ref: str, old: str, new: str) -> Look:
    """The checkouts of ``ref`` (which the caller has just read at ``old``) and what keeps a
    fast-forward to ``new`` from updating them; ``fast_forward(..., looked=)`` does not look
    again before it takes the locks (it always looks again under them)."""
    checkouts = checkouts_of(repo, ref)
    gitdirs = [git_dir_of(co, repo) for co in checkouts]
    changes = _tree_changes(repo, old, new)
    problems = [line for co, gd in zip(checkouts, gitdirs, strict=True)
                for line in _blockers(repo, co, gd, old, new, changes, ref=ref)]
    return Look(ref, old, new, checkouts, gitdirs, changes, problems)


def _head_oid(repo: Repo, checkout: Path, gitdir: Path, ref: str | None, at: str) -> str | None:
    """The commit HEAD of ``checkout`` is at. A HEAD file that names ``ref`` (read at ``at`` by
    the caller; the compare-and-swap that moves it checks that again) is answered without
    git; git decides anything else (detached, another branch, a form it alone understands)."""
    if ref is not None and _head_text(gitdir) == f"ref: {ref}\n":
        return at
    head = run_git(["rev-parse", "--verify", "--quiet", "HEAD"], cwd=checkout, check=False)
    return head.stdout.decode().strip() or None


def _blockers(repo: Repo, checkout: Path, gitdir: Path, old: str, new: str,
              changes: dict[str, tuple[_Ent | None, _Ent | None]], *, ref: str | None = None,
              held: _Held | None = None) -> list[str]:
    """``ff_blockers``; ``held``: under our lock on the checkout's index (see
    ``_local_changes``)."""
    out: list[str] = []
    op = in_progress(checkout, gitdir)
    if op is not None:
        out.append(f"{checkout}: {_a(op)} is in progress; finish or abort it first")
    lock = gitdir / "index.lock"
    if held is None and lock.exists():
        out.append(f"{lock} exists: another git command is running in {checkout}, or one was "
                   "killed (remove the file once none runs)")
    head_oid = _head_oid(repo, checkout, gitdir, ref, old)
    if head_oid != old:
        out.append(f"{checkout}: HEAD is at {_short(head_oid)}, not {_short(old)}")
    if not changes:
        return out
    if _clean_by_index(repo, checkout, gitdir, old, changes,
                       held.tmp if held is not None else None):
        # None where the landing writes (no others are looked at); and the entries
        # ``read-tree`` checks have current stat data: the copy needs no refresh.
        local: set[str] = set()
    else:
        local = _local_changes(repo, checkout, held)
    landed = _landed_paths(changes)
    touched = sorted(p for p in local if _in_region(p, changes, landed))
    if touched:
        out.append(f"{checkout}: local changes to {_names(touched)} would be overwritten by the "
                   "landing; commit or stash them")
    in_way = _in_the_way(repo, checkout, old, changes, local)
    ignored = _ignored(checkout, in_way)
    for kind, paths in (("ignored", [p for p in in_way if p in ignored]),
                        ("untracked", [p for p in in_way if p not in ignored])):
        if paths:
            out.append(f"{checkout}: {kind} {_names(paths)} would be overwritten by files the "
                       "landing adds; move them away")
    return out


# --------------------------------------------------------------------------- the index lock


class _Held:
    """``<gitdir>/index.lock`` held by us, with the copy of the index we work on."""

    def __init__(self, repo: Repo, checkout: Path, gitdir: Path) -> None:
        self.repo = repo
        self.checkout = checkout
        self.gitdir = gitdir
        self.lock = gitdir / "index.lock"
        self.index = gitdir / "index"
        self.tmp = gitdir / TMP_INDEX
        self.held = False

    def acquire(self) -> None:
        fd = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        os.close(fd)
        self.held = True
        _drop_tmp(self.gitdir)
        if self.index.exists():
            # copy2: the index's mtime is what git's racy-entry check compares file times to.
            shutil.copy2(self.index, self.tmp)

    @property
    def env(self) -> dict[str, str]:
        return {"GIT_INDEX_FILE": str(self.tmp)}

    def commit(self) -> None:
        """Make the copy the index: git's own protocol (the lock file renamed onto the index)."""
        os.replace(self.tmp, self.lock)
        crash_point("mid-index-commit")
        os.replace(self.lock, self.index)
        self.held = False

    def release(self) -> None:
        _drop_tmp(self.gitdir)
        if self.held:
            self.lock.unlink(missing_ok=True)
            self.held = False


def _drop_tmp(gitdir: Path) -> None:
    for name in (TMP_INDEX, TMP_INDEX + ".lock"):
        (gitdir / name).unlink(missing_ok=True)


def _read_tree(h: _Held, a: str, b: str) -> str | None:
    # read-tree trusts the index's stat data: the copy must be current where it writes, or a
    # file merely touched (or a checkout copied elsewhere) reads as "not uptodate". The look
    # under the lock found it so, or refreshed it (``_local_changes`` with ``held``).
    proc = h.repo.git(*_SAFE, "read-tree", "-m", "-u", a, b, cwd=h.checkout, env=h.env,
                      check=False)
    if proc.returncode == 0:
        return None
    lines = [ln.strip() for ln in proc.stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[0].removeprefix("error: ").removeprefix("fatal: ") if lines else "read-tree failed"


def _halfway_tree(h: _Held, old: str, changes: dict[str, tuple[_Ent | None, _Ent | None]]
                  ) -> str:
    """``old`` with the first half of ``changes`` applied, whole top-level groups at a time (a
    file/directory swap is never split), written through a scratch index."""
    scratch = {"GIT_INDEX_FILE": str(h.gitdir / (TMP_INDEX + "-half"))}
    items = sorted(changes.items())
    lines = b""
    taken = 0
    last_top = None
    for path, (_o, n) in items:
        top = path.split("/")[0]
        if taken >= len(items) // 2 and top != last_top:
            break
        ent = f"0 {ZERO_OID}\t" if n is None else f"{n[1]:06o} {n[0]}\t"
        lines += ent.encode() + os.fsencode(path) + b"\0"
        taken, last_top = taken + 1, top
    try:
        _git(h.repo, h.checkout, "read-tree", old, env=scratch)
        _git(h.repo, h.checkout, "update-index", "-z", "--add", "--remove", "--replace",
             "--index-info", env=scratch, input=lines)
        return _git(h.repo, h.checkout, "write-tree", env=scratch).decode().strip()
    finally:
        Path(scratch["GIT_INDEX_FILE"]).unlink(missing_ok=True)


def _update(h: _Held, old: str, new: str, changes: dict[str, tuple[_Ent | None, _Ent | None]]
            ) -> str | None:
    """Index copy (refreshed) and files of one checkout from ``old`` to ``new``, which change
    ``changes``; None or git's reason. No change: nothing to write."""
    if not changes:
        return None
    if os.environ.get(CRASH_ENV) == "mid-checkout":
        mid = _halfway_tree(h, old, changes)
        err = _read_tree(h, old, mid)
        if err is None:
            crash_point("mid-checkout")
        return err
    return _read_tree(h, old, new)


# --------------------------------------------------------------------------- fast_forward


def fast_forward(repo: Repo, ref: str, old: str, new: str, *, looked: Look | None = None
                 ) -> FFResult:
    """Move ``ref`` from ``old`` to ``new`` (a descendant) with a CAS and update every checkout
    of it (see the module doc for the order). Nothing moves when any checkout has a blocker.
    ``looked``: the caller's ``look`` at this very move, taken just before (found nothing in
    the way): it is not taken again before the locks."""
    if not is_ancestor(repo, old, new):
        return FFResult(False, [], f"{ref}: {_short(new)} does not contain {_short(old)}; "
                                   "not a fast-forward")
    current = repo.read_ref(ref)
    if current != old:
        return FFResult(False, [], f"{ref} is at {_short(current)}, not {_short(old)}")
    if looked is None or (looked.ref, looked.old, looked.new) != (ref, old, new) \
            or looked.problems:
        looked = look(repo, ref, old, new)
    if looked.problems:
        return FFResult(False, [], "; ".join(looked.problems))
    changes = looked.changes
    held: list[_Held] = []
    moved = False
    try:
        for co, gd in zip(looked.checkouts, looked.gitdirs, strict=True):
            h = _Held(repo, co, gd)
            try:
                h.acquire()
            except FileExistsError:
                _undo(repo, held, old, new)
                return FFResult(False, [], f"{h.lock} exists: another git command is running "
                                           f"in {co}; nothing landed")
            held.append(h)
            crash_point("after-index-lock")
            # Again under the lock: a file the user created (or an operation started) since the
            # first look must not be overwritten either; no git writes this index from now on.
            late = _blockers(repo, co, gd, old, new, changes, ref=ref, held=h)
            if late:
                _undo(repo, held[:-1], old, new)  # this checkout's files are not touched yet
                return FFResult(False, [], "; ".join(late))
            err = _update(h, old, new, changes)
            if err is not None:
                _undo(repo, held, old, new)
                return FFResult(False, [], f"{co}: updating the checkout would lose local files "
                                           f"({err}); nothing landed")
        crash_point("before-ref")
        try:
            repo.transaction().update(ref, new, old).commit()
        except RefConflict:
            problem = _undo(repo, held, old, new)
            now = repo.read_ref(ref)
            msg = f"{ref} moved to {_short(now)} while landing (expected {_short(old)})"
            return FFResult(False, [], f"{msg}; {problem}" if problem else msg)
        moved = True
        crash_point("after-ref")
        for h in held:
            h.commit()
        return FFResult(True, [h.checkout for h in held], None)
    except BaseException:
        # Interrupted (Ctrl-C also kills a git child half-way) or failed: leave each checkout
        # on the ref's side, as ``recover`` would.
        if not moved:
            with contextlib.suppress(Exception):
                _undo(repo, held, old, new)
        else:
            for h in held:
                if h.held and h.tmp.exists():
                    with contextlib.suppress(OSError):
                        h.commit()
        raise
    finally:
        for h in held:
            h.release()


def _undo(repo: Repo, held: list[_Held], old: str, new: str) -> str | None:
    """Put the files of checkouts updated (wholly or in part) back at ``old``. The real index
    was never replaced before the ref moved, so it is the truth: start again from a copy of it
    and go path by path (a ``read-tree`` killed half-way leaves files at ``new`` that its
    index copy does not know about). Returns what could not be put back, or None."""
    problems = []
    for h in held:
        _drop_tmp(h.gitdir)
        if h.index.exists():
            shutil.copy2(h.index, h.tmp)
        _, left = _converge(repo, h, old, new)
        h.commit()
        if left:
            problems.append(f"{h.checkout}: {_names(left)} hold neither side's content; left")
    return "; ".join(problems) or None


# --------------------------------------------------------------------------- recover


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


def recover(repo: Repo, ref: str, old: str, new: str, *, lock_owner_dead: bool,
            checkouts: list[Path] | None = None) -> str:
    """After a landing ``old -> new`` of ``ref`` was killed at any point, make every checkout
    of ``ref`` agree with wherever the ref is (``new``: finish; ``old``: undo), as git leaves
    a checkout after a completed or a never-started ``merge --ff-only``. A left ``index.lock``
    is removed only when ``lock_owner_dead`` (git records no owner). The ref is never moved.
    ``checkouts``: the checkouts of ``ref`` as the caller has just listed them
    (``checkouts_of``). Returns one line saying what was done."""
    at = repo.read_ref(ref)
    if at not in (old, new):
        return (f"{ref} is at {_short(at)}, neither {_short(old)} nor {_short(new)}: "
                "no checkout touched")
    other = old if at == new else new
    where = "finished the landing" if at == new else "undid the half-done landing"
    lines: list[str] = []
    for co in checkouts if checkouts is not None else checkouts_of(repo, ref):
        gd = git_dir_of(co, repo)
        h = _Held(repo, co, gd)
        note = ""
        op = in_progress(co, gd)
        if op is not None:
            # Started by the user after the crash (a landing refuses to start during one): its
            # index and files are the operation's now.
            lines.append(f"{co}: {_a(op)} is in progress; checkout left as it is")
            continue
        if h.lock.exists():
            if not lock_owner_dead:
                lines.append(f"{co}: {h.lock} is held and its owner is not known to be gone; "
                             "checkout left as it is")
                continue
            h.lock.unlink()
            note = f", removed the stale {h.lock}"
        try:
            h.acquire()
        except FileExistsError:
            lines.append(f"{co}: {h.lock} was taken by another git meanwhile; left as it is")
            continue
        try:
            changed, left = _converge(repo, h, at, other)
            h.commit()
        finally:
            h.release()
        if changed or note:
            msg = f"{co}: {where} at {_short(at)} ({changed} path{'s' * (changed != 1)}{note})"
        else:
            msg = f"{co}: already at {_short(at)}"
        if left:
            msg += f"; kept local edits in {_names(left)}"
        lines.append(msg)
    if not lines:
        return f"{ref} is at {_short(at)}; no checkout of it to recover"
    return "; ".join(lines)


__all__ = ["CRASH_ENV", "CRASH_POINTS", "FFResult", "Look", "checkouts_of", "crash_point",
           "fast_forward", "ff_blockers", "git_dir_of", "in_progress", "look", "recover"]
