"""Tree merges without a checkout, and what changed between two trees.

git here is 2.39: ``git merge-tree --write-tree`` cannot take an explicit merge base (2.40), and
applying a patch onto another tip is a cherry-pick (base = the patch's parent), so merges run
in process. pygit2 ``merge_trees`` is O(files) (~65 ms at 30,000 files) because it builds an
index of every path; the integrator merges one small patch after another onto a large tree,
so ``merge_trees`` first tries a tree-level merge that costs in proportion to the change: when
no path the patch changes was also changed on the other side, the result is the other side's
tree with the patch's entries written along their paths (identical subtrees are never
opened). Anything else (a path both sides touched, a file/directory clash, a submodule) goes
to libgit2's full merge, so the outcome is the same either way; only the cost differs.
Arguments are commit or tree ids (strings or ``pygit2.Oid``); results are tree ids.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pygit2

from uet_git.gitrepo.gitcmd import NO_EXTERNAL_DIFF, run_git
from uet_git.gitrepo.objects import (
    FILEMODE_TREE,
    Entry,
    OidLike,
    build_tree,
    empty_tree,
    make_commit,
    peel_tree,
    to_oid,
)
from uet_git.gitrepo.odb import get_commit, tree_of
from uet_git.gitrepo.repo import GitError, Repo

FILEMODE_COMMIT = pygit2.enums.FileMode.COMMIT

Status = Literal["A", "D", "M", "R", "T"]


@dataclass
class MergeResult:
    """``tree`` is the merged tree, or None when ``conflicts`` (the conflicting paths, sorted)
    is not empty."""

    tree: str | None
    conflicts: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.tree is not None


@dataclass(frozen=True)
class Change:
    """One changed path, like a line of ``git diff --numstat -M`` with its status.
    Binary files count 0 lines; a rename gives ``old_path``."""

    status: Status
    path: str
    old_path: str | None
    lines_added: int
    lines_removed: int
    binary: bool = False


def _tree(repo: Repo, oid: OidLike | None) -> pygit2.Tree:
    if oid is None:
        return repo._pg[to_oid(empty_tree(repo))]
    return peel_tree(repo, oid)


def merge_trees(
    repo: Repo, base: OidLike | None, ours: OidLike, theirs: OidLike
) -> MergeResult:
    """3-way merge of ``ours`` and ``theirs`` against ``base`` (None = no common ancestor),
    in memory. Clean: the merged tree is written. Conflicting: nothing useful is written and
    every conflicting path is listed (content, add/add, modify/delete, rename, binary)."""
    fast = _disjoint_merge(repo, _tree(repo, base), _tree(repo, ours), _tree(repo, theirs))
    if fast is not None:
        return MergeResult(fast, [])
    pg = repo._pg
    try:
        index = pg.merge_trees(_tree(repo, base), _tree(repo, ours), _tree(repo, theirs))
    except pygit2.GitError as exc:
        raise GitError(f"merge of {theirs} onto {ours} failed: {exc}") from exc
    if index.conflicts is not None:
        paths: set[str] = set()
        for entries in index.conflicts:
            for entry in entries:
                if entry is not None:
                    paths.add(entry.path)
        if paths:
            return MergeResult(None, sorted(paths))
    return MergeResult(str(index.write_tree(pg)), [])


def _entry(tree: pygit2.Tree, path: str) -> tuple[pygit2.Oid, int] | None:
    try:
        obj = tree[path]
    except KeyError:
        return None
    return obj.id, obj.filemode


Ent = tuple[str, int]  # (oid, mode) of a non-tree entry, as differing_entries gives it


def differing_entries(a: pygit2.Tree | None, b: pygit2.Tree | None, prefix: str = ""
                      ) -> dict[str, tuple[Ent | None, Ent | None]]:
    """``{path: (entry in a, entry in b)}`` for every blob (link, submodule) that differs
    between two trees, skipping subtrees with equal ids: O(changes x depth), where libgit2's
    tree diff walks every entry (17 ms at 30,000 files). Paths are file-system strings
    (pygit2's ``name``: surrogateescape), in the walk's order."""
    out: dict[str, tuple[Ent | None, Ent | None]] = {}
    _walk(a, b, prefix, out)
    return out


def _walk(a: pygit2.Tree | None, b: pygit2.Tree | None, prefix: str,
          out: dict[str, tuple[Ent | None, Ent | None]]) -> None:
    ea = {e.name: e for e in a} if a is not None else {}
    eb = {e.name: e for e in b} if b is not None else {}
    for name in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(name), eb.get(name)
        if x is not None and y is not None and x.id == y.id and x.filemode == y.filemode:
            continue
        path = prefix + name
        xt = x if x is not None and x.filemode == FILEMODE_TREE else None
        yt = y if y is not None and y.filemode == FILEMODE_TREE else None
        if xt is not None or yt is not None:
            _walk(xt, yt, path + "/", out)  # type: ignore[arg-type]
        xe = (str(x.id), int(x.filemode)) if x is not None and xt is None else None
        ye = (str(y.id), int(y.filemode)) if y is not None and yt is None else None
        if xe is not None or ye is not None:
            out[path] = (xe, ye)


def differing_paths(a: pygit2.Tree | None, b: pygit2.Tree | None, prefix: str = ""
                    ) -> list[str]:
    """The paths of ``differing_entries``."""
    return list(differing_entries(a, b, prefix))


def _disjoint_merge(
    repo: Repo, base: pygit2.Tree, ours: pygit2.Tree, theirs: pygit2.Tree
) -> str | None:
    """The merged tree when ``theirs`` changed only paths ``ours`` left as in ``base``; None
    when that does not hold (then the full merge decides, conflicts included)."""
    if ours.id == base.id or ours.id == theirs.id:
        return str(theirs.id if ours.id == base.id else ours.id)
    if theirs.id == base.id:
        return str(ours.id)
    files: dict[str, Entry | None] = {}
    try:
        # A rename is a delete plus an add here: exact at the tree level.
        for path in differing_paths(base, theirs):
            mine = _entry(theirs, path)
            if _entry(ours, path) != _entry(base, path):
                return None  # both sides touched it
            parts = path.split("/")
            for i in range(1, len(parts)):
                prefix = _entry(ours, "/".join(parts[:i]))
                if prefix is not None and prefix[1] != FILEMODE_TREE:
                    return None  # the other side has a file where this path needs a dir
            if mine is not None and mine[1] == FILEMODE_COMMIT:
                return None  # submodules: let libgit2 decide
            files[path] = None if mine is None else Entry(str(mine[0]), mine[1])
        return build_tree(repo, ours.id, files)
    except (GitError, pygit2.GitError, ValueError):
        return None  # a file/directory clash build_tree refuses, or an odd entry


_STATUS: dict[str, Status] = {"A": "A", "D": "D", "M": "M", "R": "R", "T": "T", "C": "A"}


def changed_paths(repo: Repo, old: OidLike | None, new: OidLike) -> list[Change]:
    """Every path that differs from ``old`` (None = empty) to ``new``, renames detected,
    sorted by path."""
    diff = _tree(repo, old).diff_to_tree(
        _tree(repo, new), flags=pygit2.enums.DiffOption.INCLUDE_TYPECHANGE
    )
    diff.find_similar()
    out: list[Change] = []
    for patch in diff:
        if patch is None:  # pragma: no cover - libgit2 gives None for unmodified entries only
            continue
        delta = patch.delta
        status = _STATUS.get(delta.status_char())
        if status is None:
            continue
        binary = bool(delta.is_binary)
        added = removed = 0
        if not binary:
            _, added, removed = patch.line_stats
        out.append(Change(
            status=status,
            path=delta.new_file.path if status != "D" else delta.old_file.path,
            old_path=delta.old_file.path if status == "R" else None,
            lines_added=added,
            lines_removed=removed,
            binary=binary,
        ))
    out.sort(key=lambda c: c.path)
    return out


def diff_stat(repo: Repo, old: OidLike | None, new: OidLike) -> str:
    """``git diff --stat --summary -M`` from ``old`` (None = empty) to ``new`` (the evidence
    blob a user reads), formatted by libgit2 in process: no git process on every patch."""
    diff = _tree(repo, old).diff_to_tree(_tree(repo, new))
    diff.find_similar()
    fmt = pygit2.enums.DiffStatsFormat
    return diff.stats.format(fmt.FULL | fmt.INCLUDE_SUMMARY, 100)


def is_ancestor(repo: Repo, a: OidLike, b: OidLike) -> bool:
    """True if commit ``a`` is ``b`` or an ancestor of ``b`` (``git merge-base --is-ancestor``)."""
    pg = repo._pg
    oa, ob = to_oid(a), to_oid(b)
    for o in (oa, ob):
        if o not in pg:
            raise GitError(f"commit {o} does not exist")
    return oa == ob or pg.descendant_of(ob, oa)


@dataclass(frozen=True)
class RebaseResult:
    """``commit``: the rebased commit, or None when ``conflicts`` lists the conflicting paths
    or when ``already_applied`` (the change is already in ``onto``: nothing to add)."""

    commit: str | None
    conflicts: list[str] = field(default_factory=list)
    already_applied: bool = False


def rebase(repo: Repo, commit: str, onto: str) -> RebaseResult:
    """``commit``'s change against its first parent applied onto ``onto`` (a 3-way merge in
    memory, like ``git cherry-pick``), as a new commit whose only parent is ``onto``, with the
    message and author kept (the committer is who git would record now). ``commit`` itself
    when its parent already is ``onto``. Writes objects only; no ref or worktree moves."""
    c = get_commit(repo, commit, what=f"commit {commit}")
    onto_oid = get_commit(repo, onto, what=f"rebase target {onto}").oid
    if c.parent == onto_oid:
        return RebaseResult(c.oid)
    result = merge_trees(repo, c.parent, onto_oid, c.oid)
    if result.conflicts or result.tree is None:
        return RebaseResult(None, sorted(result.conflicts))
    if result.tree == tree_of(repo, onto_oid):
        return RebaseResult(None, [], already_applied=True)
    return RebaseResult(make_commit(repo, result.tree, [onto_oid], c.message, author=c.author))


def rev_list(repo: Repo, *args: str) -> list[str]:
    """The object ids ``git rev-list ARGS`` prints (revisions and options, e.g.
    ``"--topo-order", new, "^old"``), in its order."""
    out = repo.git("rev-list", *args).stdout.decode()
    return [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]


def count_commits(repo: Repo, old: str, new: str) -> int:
    """How many commits ``new`` has that ``old`` has not (``git rev-list --count old..new``)."""
    a = get_commit(repo, old, what=f"commit {old}").oid
    b = get_commit(repo, new, what=f"commit {new}").oid
    return int(repo.git_out("rev-list", "--count", b, f"^{a}"))


def diff_bytes(repo: Repo, a: str, b: str) -> bytes:
    """The binary diff (``git apply`` reads it) from commit-or-tree ``a`` to ``b``, full
    index lines, no renames; made by plumbing, so no diff config (external diff, textconv,
    prefixes, colour) a tool could have set changes it."""
    ta, tb = tree_of(repo, a), tree_of(repo, b)
    return repo.git("diff-tree", "-p", "--binary", "--full-index", "--no-color",
                    *NO_EXTERNAL_DIFF, "-r", ta, tb).stdout


# Conflict evidence is for a person to read: bounded, so a conflict in a huge generated file
# cannot bloat the ledger.
CONFLICT_TEXT_LIMIT = 256 * 1024


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:8000]


def conflict_text(repo: Repo, base: OidLike | None, ours: OidLike, theirs: OidLike, *,
                  labels: tuple[str, str, str] = ("ours", "base", "theirs")) -> bytes:
    """What a person needs to resolve the 3-way merge of ``ours`` and ``theirs`` against
    ``base`` (commits or trees; ``labels`` name them in that order: ours, base, theirs): per
    conflicting path a header line ``=== PATH: KIND``, then for a text file both sides
    changed, the file as ``git merge-file -p --diff3`` prints it (conflict hunks with the
    base between ``|||||||`` and ``=======``), made by ``git merge-file`` on the three blobs
    in a temporary directory (git 2.39 has no ``--object-id``); for a side that deleted the
    file, the other side's content; binary files and submodules are named only. Empty when
    the merge is clean. At most ``CONFLICT_TEXT_LIMIT`` bytes (then a last line says so)."""
    pg = repo._pg
    try:
        index = pg.merge_trees(_tree(repo, base), _tree(repo, ours), _tree(repo, theirs))
    except pygit2.GitError as exc:
        raise GitError(f"merge of {theirs} onto {ours} failed: {exc}") from exc
    if index.conflicts is None:
        return b""
    l_ours, _, l_theirs = labels
    chunks: list[bytes] = []
    for anc, our, their in index.conflicts:
        path = next(e.path for e in (our, their, anc) if e is not None)
        blobs = [None if e is None or e.mode == FILEMODE_COMMIT else pg[e.id].data
                 for e in (our, anc, their)]
        o_data, a_data, t_data = blobs
        if any(e is not None and e.mode == FILEMODE_COMMIT for e in (our, anc, their)):
            chunks.append(f"=== {path}: submodule changed on both sides\n".encode())
            continue
        if our is None or their is None:
            gone, kept, data = ((l_ours, l_theirs, t_data) if our is None
                                else (l_theirs, l_ours, o_data))
            head = f"=== {path}: deleted in {gone}, modified in {kept}"
            if data is None or _is_binary(data):
                chunks.append(f"{head} (binary)\n".encode())
            else:
                chunks.append(f"{head}; {kept} has:\n".encode() + data
                              + (b"" if data.endswith(b"\n") else b"\n"))
            continue
        kind = "added on both sides" if anc is None else "changed on both sides"
        if any(d is not None and _is_binary(d) for d in blobs):
            chunks.append(f"=== {path}: {kind} (binary)\n".encode())
            continue
        chunks.append(f"=== {path}: {kind}\n".encode() + _merge_file(
            o_data or b"", a_data or b"", t_data or b"", labels))
    text = b"".join(chunks)
    if len(text) > CONFLICT_TEXT_LIMIT:
        text = text[:CONFLICT_TEXT_LIMIT] + b"\n... (cut at %d bytes)\n" % CONFLICT_TEXT_LIMIT
    return text


def _merge_file(ours: bytes, base: bytes, theirs: bytes, labels: tuple[str, str, str]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="uet-conflict-") as tmp:
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            (Path(tmp) / name).write_bytes(data)
        proc = run_git(["merge-file", "-p", "--diff3", "-L", labels[0], "-L", labels[1],
                        "-L", labels[2], "ours", "base", "theirs"], cwd=tmp, check=False)
    if proc.returncode < 0 or proc.returncode > 127:
        raise GitError(f"git merge-file: {proc.stderr.decode(errors='replace').strip()}")
    out = proc.stdout
    return out if out.endswith(b"\n") or not out else out + b"\n"



def rebase_conflict_text(repo: Repo, commit: str, onto: str, *, what: str = "patch") -> bytes:
    """``conflict_text`` for ``rebase(repo, commit, onto)``: ours = ``onto``, base = the
    commit's first parent, theirs = the commit (``what`` names it in the labels)."""
    c = get_commit(repo, commit, what=f"commit {commit}")
    onto_oid = get_commit(repo, onto, what=f"rebase target {onto}").oid
    return conflict_text(repo, c.parent, onto_oid, c.oid,
                         labels=(f"tip {onto_oid[:12]}", f"base {(c.parent or '-')[:12]}",
                                 f"{what} {c.oid[:12]}"))
