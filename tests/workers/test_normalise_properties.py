"""Property: whatever a tool leaves in its worktree (new, changed, deleted and renamed files,
exec bits, symlinks, nested directories), the patch's tree is the tree the git CLI builds from
those files, and the changes name exactly the paths that differ."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Workstream
from uet_git.workers.normalise import normalise
from uet_git.workers.pool import WorktreePool

REG, EXE, LINK = "100644", "100755", "120000"
Model = dict[bytes, tuple[str, bytes]]  # path -> (mode, content or link target)

_names = st.sampled_from([b"a", b"b", b"c.txt", b"d d", b"\xc3\xa9", b"\xff", b"-x"])
_paths = st.lists(_names, min_size=1, max_size=3).map(b"/".join)
_entries = st.tuples(st.sampled_from([REG, REG, EXE, LINK]),
                     st.binary(min_size=0, max_size=20).map(lambda b: b.replace(b"\0", b"")))


def _prefix_free(paths: list[bytes]) -> bool:
    """No path is also a directory of another (a file and a directory cannot share a name)."""
    s = set(paths)
    return not any(p[:i] in s for p in s for i in range(len(p)) if p[i:i + 1] == b"/")


models = st.dictionaries(_paths, _entries, min_size=1, max_size=6).filter(
    lambda m: _prefix_free(list(m)))


@st.composite
def edits(draw: st.DrawFn) -> tuple[Model, Model]:
    """A base model and what the tool leaves: some kept, some deleted, some changed (content or
    mode), some renamed (same content, new path), some new."""
    base = draw(models)
    final: Model = {}

    def put(path: bytes, entry: tuple[str, bytes]) -> None:
        if _prefix_free([*final, path]):
            final[path] = entry

    for path, entry in base.items():
        what = draw(st.sampled_from(["keep", "keep", "delete", "change", "rename", "mode"]))
        if what == "keep":
            put(path, entry)
        elif what == "change":
            put(path, (entry[0], entry[1] + b"+changed"))
        elif what == "mode" and entry[0] != LINK:
            put(path, (EXE if entry[0] == REG else REG, entry[1]))
        elif what == "rename":
            put(draw(_paths) + b".moved", entry)
    for path, entry in draw(st.dictionaries(_paths, _entries, max_size=3)).items():
        put(path, entry)
    return base, final


def _tree_of(repo: Path, model: Model) -> str:
    """The tree the git CLI builds from ``model`` (blobs by hash-object, a fresh index)."""
    index = repo / ".git" / "prop-index"
    index.unlink(missing_ok=True)
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    lines = []
    for path, (mode, data) in sorted(model.items()):
        oid = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=repo, input=data,
                             capture_output=True, check=True).stdout.decode().strip()
        lines.append(f"{mode} {oid}\t".encode() + path + b"\0")
    subprocess.run(["git", "update-index", "-z", "--index-info"], cwd=repo, env=env,
                   input=b"".join(lines), check=True)
    return subprocess.run(["git", "write-tree"], cwd=repo, env=env, capture_output=True,
                          check=True).stdout.decode().strip()


def _commit(repo: Path, model: Model) -> str:
    tree = _tree_of(repo, model)
    return git(repo, "commit-tree", "-m", "base", tree)


def _apply(wt: Path, base: Model, final: Model) -> None:
    root = os.fsencode(wt)
    for path in base:
        if path not in final or final[path] != base[path]:
            os.unlink(os.path.join(root, path))
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        rel = os.path.relpath(dirpath, root)
        if rel == b"." or rel.split(b"/")[0] == b".git":
            continue
        if not os.listdir(dirpath):
            os.rmdir(dirpath)
    for path, (mode, data) in final.items():
        if base.get(path) == (mode, data):
            continue
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if mode == LINK:
            os.symlink(data or b"x", full)
        else:
            with open(full, "wb") as f:
                f.write(data)
            os.chmod(full, 0o755 if mode == EXE else 0o644)


def _norm_links(model: Model) -> Model:
    # An empty symlink target cannot exist on disk: _apply writes "x".
    return {p: (m, d or b"x") if m == LINK else (m, d) for p, (m, d) in model.items()}


@pytest.fixture
def pool(tmp_path: Path):
    repo = Repo.open(make_repo(tmp_path / "repo", {"seed": "s\n"}))
    p = WorktreePool(repo, size=1)
    yield p
    p.close(remove=True)


@settings(max_examples=12, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(edits())
def test_patch_tree_is_the_tree_git_builds_from_the_files(pool: WorktreePool,
                                                          change: tuple[Model, Model]) -> None:
    base, final = (_norm_links(m) for m in change)
    repo = pool.repo
    base_commit = _commit(repo.workdir, base)
    wt = pool.acquire(base_commit)
    try:
        _apply(wt.path, base, final)
        norm = normalise(repo, wt.path, base_commit, ws=Workstream(id="p"), run="r",
                         attempt=1, tool="shell")
        assert norm.error is None
        if final == base:
            assert norm.patch is None
            return
        assert norm.patch is not None
        assert git(repo.workdir, "rev-parse", f"{norm.patch}^{{tree}}") == \
            _tree_of(repo.workdir, final)
        differ = {os.fsdecode(p) for p in base.keys() | final.keys()
                  if base.get(p) != final.get(p)}
        named = {p for c in norm.changes for p in (c.path, c.old_path) if p}
        assert named == differ
    finally:
        pool.release(wt)


def test_modes_on_disk_are_what_the_model_says(tmp_path: Path) -> None:
    """The test's own helper: _apply leaves exactly the model on disk."""
    wt = tmp_path / "wt"
    wt.mkdir()
    _apply(wt, {}, {b"x/y": (EXE, b"1"), b"l": (LINK, b"x/y"), b"z": (REG, b"")})
    assert stat.S_IMODE(os.stat(wt / "x" / "y").st_mode) == 0o755
    assert os.readlink(wt / "l") == "x/y" and (wt / "z").read_bytes() == b""
