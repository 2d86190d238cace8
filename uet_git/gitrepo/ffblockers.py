"""What keeps a fast-forward from updating a checkout, one line each (``ff_blockers``).

An operation in progress, a held ``index.lock``, a HEAD elsewhere, a local change where the
landing writes, an untracked or ignored file where it adds one. ``git status`` runs only when
the index does not settle the question in process (``indexclean``). The one-line wording
helpers (``_short``, ``_a``, ``_names``) live here with the lines they word.
"""

from __future__ import annotations

import os
from pathlib import Path

from uet_git.gitrepo.checkouts import _SAFE, _head_text, git_dir_of, in_progress
from uet_git.gitrepo.indexclean import _clean_by_index
from uet_git.gitrepo.indexlock import _Held
from uet_git.gitrepo.landpaths import (
    _GITLINK,
    _TREE,
    _Ent,
    _in_region,
    _landed_paths,
    _prefixes,
    _tree_changes,
)
from uet_git.gitrepo.objects import peel_tree
from uet_git.gitrepo.repo import Repo, run_git


def _short(oid: str | None) -> str:
    return (oid or "-")[:12]


def _a(op: str) -> str:
    return f"{'an' if op[0] in 'aeiou' else 'a'} {op}"


def _names(paths: list[str], limit: int = 5) -> str:
    shown = ", ".join(paths[:limit])
    return f"{shown} and {len(paths) - limit} more" if len(paths) > limit else shown


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


__all__ = ["ff_blockers"]
