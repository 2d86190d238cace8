"""A user's checkouts of a branch, read as git reads them.

Which worktrees (main or linked) have a branch checked out (``checkouts_of``), each one's git
dir (``git_dir_of``) and HEAD file, and whether a rebase, merge or the like is in progress there
(``in_progress``). Laid out the way git makes them, these are read from the files, with no
process started; git is asked about anything else. Also how uet's git runs in a user's
checkout (``_SAFE``, ``_git``): every module that starts git in one goes through these.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from uet_git.gitrepo.repo import GitError, Repo, run_git
from uet_git.gitrepo.worktrees import admin_dir, list_worktrees

# uet's git in a user's checkout never runs a program a tool could have planted in config.
_SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")


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


__all__ = ["checkouts_of", "git_dir_of", "in_progress"]
