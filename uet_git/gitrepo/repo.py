"""The one boundary to git: a repository handle that runs the git CLI and hands out pygit2.

pygit2 objects must not be shared between threads, so ``Repo._pg`` is one
``pygit2.Repository`` per thread, freed with its thread or its ``Repo`` (``handles.py``).
Every git subprocess runs with automatic gc/maintenance off, so background packing never
fires under running workers, and with hooks, fsmonitor and the pager off (``gitcmd.py``: a
tool may have planted them in the config).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from uet_git.gitrepo import filters, handles, looserefs
from uet_git.gitrepo.gitcmd import MIN_GIT, GitError, git_version, require_git, run_git
from uet_git.gitrepo.refs import RefTransaction, RefUpdater, for_each_ref

# Environment that makes git read another repository, object store or ref view than the
# files below ``common_dir``: the in-process reads then step aside for git.
_REDIRECT_ENV = ("GIT_DIR", "GIT_COMMON_DIR", "GIT_WORK_TREE", "GIT_NAMESPACE",
                 "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_REF_PARANOIA",
                 "GIT_QUARANTINE_PATH", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS")
_GITFILE = re.compile(rb"gitdir: ([^\n]+)\n?")
_HEX40 = re.compile(r"[0-9a-f]{40}")

__all__ = ["MIN_GIT", "GitError", "Repo", "git_version", "require_git", "run_git"]


@dataclass
class Repo:
    """A non-bare repository opened from any directory inside it (or a linked worktree).

    ``workdir`` is the main worktree's top level, ``git_dir`` this worktree's git dir and
    ``common_dir`` the shared one (refs, objects; where uet keeps its own files under ``uet/``).
    """

    workdir: Path
    git_dir: Path
    common_dir: Path
    bare: bool = False
    _local: threading.local = field(default_factory=threading.local, repr=False)
    # Small per-repository caches other gitrepo modules keep (e.g. the commit identity).
    _cache: dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = ".", *, bare_ok: bool = False) -> Repo:
        """The repository at ``path``. ``bare_ok``: a bare repository (a CI server's mirror)
        is accepted for commands that only read or move refs; its ``workdir`` is then the git
        dir itself (git runs there) and ``bare`` is True."""
        require_git()
        p = Path(path)
        if not p.exists():
            raise GitError(f"{p}: no such directory")
        found = _main_worktree_top(p)
        if found is not None:
            repo = cls(workdir=found.parent, git_dir=found, common_dir=found)
            repo.trusted_filters()  # pinned now, before any tool can have planted one
            return repo
        return cls.open_with_git(p, bare_ok=bare_ok)

    @classmethod
    def open_with_git(cls, p: Path, *, bare_ok: bool = False) -> Repo:
        """``open`` as git discovers the repository (one ``git rev-parse``): every layout."""
        proc = run_git(
            ["rev-parse", "--is-bare-repository", "--absolute-git-dir", "--git-common-dir",
             "--show-toplevel"],
            cwd=p,
            check=False,
        )
        lines = proc.stdout.decode().splitlines()
        # A bare repository answers the first questions, then fails on --show-toplevel.
        if bare_ok and lines and lines[0] == "true" and len(lines) >= 3:
            git_dir = Path(lines[1]).resolve()
            repo = cls(workdir=git_dir, git_dir=git_dir, common_dir=git_dir, bare=True)
            repo.trusted_filters()
            return repo
        if (lines and lines[0] == "true") or (proc.returncode == 0 and len(lines) < 4):
            raise GitError(f"{p.resolve()}: a bare repository has no worktree; uet needs one")
        if proc.returncode != 0 and len(lines) >= 2:
            raise GitError(f"{p.resolve()}: inside the git directory {lines[1]}; "
                           "run uet from the worktree")
        if proc.returncode != 0:
            raise GitError(f"{p.resolve()}: not inside a git repository")
        git_dir = Path(lines[1])
        common = Path(lines[2])
        if not common.is_absolute():
            common = (p / common).resolve()
        # The main worktree is the parent of the common dir (for a linked worktree, too).
        workdir = common.parent if common.name == ".git" else Path(lines[3])
        repo = cls(
            workdir=workdir.resolve(), git_dir=git_dir.resolve(), common_dir=common.resolve()
        )
        repo.trusted_filters()  # pinned now, before any tool can have planted one
        return repo

    def fresh(self) -> Repo:
        """This repository with new pygit2 handles and empty caches (libgit2 answers "exists"
        from its object cache even after another process pruned the object), keeping the
        filter drivers trusted at open: a copy must not trust what a tool planted since."""
        copy = Repo(workdir=self.workdir, git_dir=self.git_dir, common_dir=self.common_dir,
                    bare=self.bare)
        copy._cache["filters-trusted"] = self.trusted_filters()
        return copy

    def trusted_filters(self) -> filters.FilterConfig:
        """The filter drivers uet runs: those configured when the repository was opened."""
        trusted = self._cache.get("filters-trusted")
        if not isinstance(trusted, filters.FilterConfig):
            trusted = self._filters_now(self.workdir, ())
            self._cache["filters-trusted"] = trusted
        return trusted

    def _filters_now(self, cwd: str | os.PathLike[str], lead: tuple[str, ...]
                     ) -> filters.FilterConfig:
        git_dir = self._git_dir_at(cwd, lead)
        files = None if git_dir is None else filters.config_files(self.common_dir, git_dir)
        if files is not None and filters.mention_none(files):
            return filters.NONE  # no file git reads can name a driver or include one
        where = (str(cwd), lead)
        key = filters.stat_key(self.common_dir, cwd, lead)
        views = self._cache.setdefault("filters-now", {})
        assert isinstance(views, dict)
        hit = views.get(where)
        if hit is not None and hit[0] == key and not hit[1].has_includes:
            return hit[1]
        view = filters.read_filters(cwd, lead)
        if not view.ok and (cwd, lead) != (self.workdir, ()):
            # git cannot read the config there (a broken worktree): take the main view, so a
            # driver is never left unpinned for want of an answer.
            view = self._filters_now(self.workdir, ())
        views[where] = (key, view)
        return view

    def _git_dir_at(self, cwd: str | os.PathLike[str], lead: tuple[str, ...]) -> Path | None:
        """The git dir of this repository that ``git LEAD ...`` started in ``cwd`` uses, when
        that is plain to see: ``--git-dir D``, or ``cwd/.git`` (this repository's own git dir,
        or a linked worktree's ``gitdir:`` file) whose common dir is ``common_dir``. None when
        anything else could decide it (the caller then asks git)."""
        if any(k in os.environ for k in _REDIRECT_ENV):
            return None
        here = Path(cwd)
        try:
            if lead:
                d = here / lead[1]
            else:
                dotgit = here / ".git"
                st = os.lstat(dotgit)
                if stat.S_ISDIR(st.st_mode):
                    d = dotgit
                elif stat.S_ISREG(st.st_mode):
                    m = _GITFILE.fullmatch(dotgit.read_bytes())
                    if not m:
                        return None  # git reads or refuses it its own way
                    d = here / os.fsdecode(m[1])
                else:
                    return None
            common = d
            if (d / "commondir").is_file():
                common = d / os.fsdecode((d / "commondir").read_bytes().rstrip(b"\n"))
            if not os.path.samefile(common, self.common_dir):
                return None
        except OSError:
            if not lead and self.bare and Path(cwd) == self.common_dir:
                return self.common_dir  # a bare repository: git runs in its git dir
            return None
        return d

    def files_refs(self) -> Path | None:
        """The directory whose files git, started in ``workdir``, reads this repository's refs
        from, when ``looserefs`` can read them as git does (the main worktree's own git dir is
        ``common_dir``, plain files backend, no environment pointing git elsewhere); None
        when only git can answer.

        Asked before every in-process ref read: the answer is kept while the files it was
        read from are unchanged (``_store_key``), the environment still checked each time."""
        if any(k in os.environ for k in _REDIRECT_ENV):
            return None
        key = self._store_key()
        hit = self._cache.get("files-refs")
        if key is not None and isinstance(hit, tuple) and hit[0] == key:
            return hit[1]
        found = self._files_refs_now()
        if key is not None:
            self._cache["files-refs"] = (key, found)
        return found

    def _store_key(self) -> tuple[object, ...] | None:
        """What ``files_refs``'s answer is read from, as ``looserefs.stat_key``s, when the main
        worktree's ``.git`` is ``common_dir`` itself: that directory (its entries: ``objects``,
        ``refs``, ``reftable``, ``commondir``, and ``HEAD`` or ``config`` replaced by a rename),
        and ``HEAD`` and ``config`` (rewritten in place). None: not cached."""
        common = str(self.common_dir)
        if self.bare or common != os.path.join(self.workdir, ".git"):
            return None
        key = (looserefs.stat_key(common), looserefs.stat_key(common + "/HEAD"),
               looserefs.stat_key(common + "/config"))
        return None if None in key else key

    def _files_refs_now(self) -> Path | None:
        git_dir = self._git_dir_at(self.workdir, ())
        if git_dir is None or not os.path.samefile(git_dir, self.common_dir):
            return None
        return self.common_dir if looserefs.plain_store(self.common_dir) else None

    def refs_in_process(self, patterns: tuple[str, ...]) -> dict[str, str] | None:
        """``for_each_ref(self, *patterns)`` read from the files, or None when git must be
        asked (``looserefs.list_refs``)."""
        store = self.files_refs()
        if store is None:
            return None
        try:
            return looserefs.list_refs(store, patterns)
        except looserefs.Unsure:
            return None

    def _filter_env(self, args: tuple[str, ...], cwd: str | os.PathLike[str],
                    env: Mapping[str, str] | None) -> Mapping[str, str] | None:
        """``env`` plus the config pinning filter drivers to the trusted ones (filters.py)."""
        trusted = self.trusted_filters()
        now = self._filters_now(cwd, _git_dir_option(args))
        pins = filters.overrides(trusted, now)
        if not pins:
            return env
        return {**(env or {}), **filters.config_env(pins, {**os.environ, **(env or {})})}

    @property
    def _pg(self) -> pygit2.Repository:
        """This thread's pygit2 handle, for gitrepo's own modules only: everyone else reads
        objects through ``odb`` (plain data, safe across threads)."""
        held = getattr(self._local, "repo", None)
        if held is None:
            # Freed when this thread ends or this Repo is dropped (handles.py: a pygit2
            # handle left to the cyclic collector keeps libgit2's caches long after).
            held = handles.ThreadHandle(self.common_dir)
            self._local.repo = held
        return held.repo

    @property
    def uet_dir(self) -> Path:
        """``<common git dir>/uet``: uet's private files (locks, worktrees, caches)."""
        d = self.common_dir / "uet"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def git(
        self,
        *args: str,
        cwd: str | os.PathLike[str] | None = None,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run git in this repository (in ``cwd`` if given, else the main worktree), with
        filter drivers pinned to the trusted ones."""
        where = cwd or self.workdir
        return run_git(args, cwd=where, input=input, env=self._filter_env(args, where, env),
                       check=check)

    def git_out(self, *args: str, cwd: str | os.PathLike[str] | None = None) -> str:
        return self.git(*args, cwd=cwd).stdout.decode().strip()

    def rev_parse(self, rev: str) -> str | None:
        """The full object id ``rev`` names (peeled to a commit), or None. A full object id or
        ref name is read in process (``_commit_in_process``); any other revision by git."""
        fast = self._commit_in_process(rev)
        if fast is not None:
            return fast or None
        proc = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                        check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def _commit_in_process(self, rev: str) -> str | None:
        """``rev``'s commit for a full object id or a plain full ref name: the id when the
        object is a commit, "" when git would answer nothing (not found, a tree or a blob);
        None to ask git (a tag, a missing object git might fetch, replace refs in use)."""
        store = self.files_refs()
        if store is None:
            return None
        try:
            if _HEX40.fullmatch(rev):
                oid: str | None = rev
            elif looserefs.plain_name(rev):
                oid = looserefs.read_ref(store, rev)
            else:
                return None
            if oid is None:
                return ""
            if looserefs.replace_refs(store):
                return None  # git reads replaced objects' types through them
        except looserefs.Unsure:
            return None
        try:
            obj = self._pg.get(oid)
        except (pygit2.GitError, ValueError):
            return None  # unreadable here: git says what it is
        if obj is None or obj.type == pygit2.enums.ObjectType.TAG:
            return None
        return oid if obj.type == pygit2.enums.ObjectType.COMMIT else ""

    def read_ref(self, name: str) -> str | None:
        """The object id a full ref name points to, or None (trusts git, not a cache): read
        from the ref files as git reads them (``looserefs.read_ref``), git asked whenever that
        is not certain."""
        store = self.files_refs()
        if store is not None:
            try:
                return looserefs.read_ref(store, name)
            except looserefs.Unsure:
                pass
        proc = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", name,
                        check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def list_refs(self, prefix: str) -> dict[str, str]:
        """``{refname: oid}`` of every ref below ``prefix`` (e.g. ``refs/uet/``), sorted."""
        return for_each_ref(self, prefix)

    def transaction(self, updater: RefUpdater | None = None) -> RefTransaction:
        """A new atomic ref transaction (see ``refs.py``); run through ``updater`` if given."""
        return RefTransaction(self, updater)

    def current_branch(self) -> str | None:
        """The branch checked out in the main worktree (short name), or None if detached."""
        store = self.files_refs()
        if store is not None:
            try:
                full = looserefs.head_branch(store)
                return None if full is None else looserefs.short_branch(store, full)
            except looserefs.Unsure:
                pass
        proc = self.git("symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def _main_worktree_top(p: Path) -> Path | None:
    """``p/.git`` (resolved) when ``p`` is the top of a main worktree whose repository git
    opens plainly — its own ``.git`` directory owned by us, a valid git dir, a config with no
    ``bare``/``worktree`` setting but git init's, no extensions and no includes, and no
    environment that redirects git — so that git's discovery surely answers ``p`` itself.
    None when git must be asked (subdirectories, linked worktrees, bare repositories and
    anything unusual)."""
    if any(k in os.environ for k in (*_REDIRECT_ENV, "SUDO_UID")):
        return None
    dotgit = p / ".git"
    try:
        st = os.lstat(dotgit)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or \
                os.stat(p).st_uid != os.geteuid():
            return None  # another owner: git's safe.directory rules decide
        if (dotgit / "commondir").exists() or not (dotgit / "objects").is_dir() or \
                not (dotgit / "refs").is_dir():
            return None
        head = (dotgit / "HEAD").read_bytes()
        config = (dotgit / "config").read_bytes().lower()
    except OSError:
        return None
    if not (_HEAD_OK.fullmatch(head) and _FORMAT_OK.search(config)):
        return None
    rest = config.replace(b"bare = false", b"")
    if any(w in rest for w in (b"bare", b"worktree", b"extensions", b"include",
                               b"repositoryformatversion = 1")):
        return None
    return dotgit.resolve()


_HEAD_OK = re.compile(rb"(?:ref: refs/[^\n]+|[0-9a-f]{40})\n?")
_FORMAT_OK = re.compile(rb"^\s*repositoryformatversion = 0$", re.M)


def _git_dir_option(args: Sequence[str]) -> tuple[str, ...]:
    """The ``--git-dir X`` among git's leading options (it selects the worktree config)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in ("--git-dir", "--work-tree", "-c", "-C"):
            if args[i] == "--git-dir" and i + 1 < len(args):
                return ("--git-dir", args[i + 1])
            i += 2
        elif args[i].startswith("--git-dir="):
            return ("--git-dir", args[i].partition("=")[2])
        else:
            i += 1
    return ()
