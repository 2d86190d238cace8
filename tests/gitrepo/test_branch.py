"""Landing like ``git merge --ff-only``: local changes kept, what would be lost refused, and
every crash point recovered to a state the git CLI calls clean."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess as sp
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import copy_repo, git, make_repo, start_forked, wait_forked
from uet_git.gitrepo.branch import fast_forward, recover
from uet_git.gitrepo.checkouts import checkouts_of, git_dir_of, in_progress
from uet_git.gitrepo.ffblockers import ff_blockers
from uet_git.gitrepo.indexlock import CRASH_ENV
from uet_git.gitrepo.repo import Repo

REF = "refs/heads/main"


def commit_on(path: Path, parent: str, files: dict[str, str | None], msg: str = "land") -> str:
    """A commit on top of ``parent`` with ``files`` written (None deletes), made in a scratch
    index and directory so the user's checkout and index are not touched.

    The commit ``git add -A -f`` + ``git commit -m MSG`` in a fresh worktree at ``parent``
    would make, without checking ``parent`` out: ``read-tree`` puts ``parent`` in the scratch
    index, ``update-index --add --remove`` (what ``add`` runs per path: the same filters and
    attributes, read from the written files, then from the index) takes each written file
    and drops each deleted one (absent from the scratch directory), ``write-tree`` and
    ``commit-tree`` record the tree and the commit (same identity, dates and message)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix="stage-") as tmp:
        stage = Path(tmp) / "w"
        stage.mkdir()
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}

        def run(*args: str) -> str:
            proc = sp.run(["git", *args], cwd=path, env=env, capture_output=True, text=True)
            assert proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
            return proc.stdout.strip()

        run("read-tree", parent)
        names = sorted(files, key=lambda name: files[name] is not None)  # deletions first
        for name in names:
            if (content := files[name]) is not None:
                f = stage / name
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(content)
        run(f"--work-tree={stage}", "update-index", "--add", "--remove", "--", *names)
        return run("commit-tree", run("write-tree"), "-p", parent, "-m", msg)


@pytest.fixture(scope="module")
def _setup_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``setup``'s repository, built once: each test gets a copy of it."""
    path = make_repo(tmp_path_factory.mktemp("setup") / "repo", {
        "a.txt": "a\n", "keep.txt": "keep\n", "src/b.txt": "b\n", ".gitignore": "secrets.env\n"})
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"a.txt": "a2\n", "src/c.txt": "c\n", "src/b.txt": None})
    return path, old, new


@pytest.fixture
def setup(_setup_template: tuple[Path, str, str], tmp_path: Path) -> tuple[Repo, str, str]:
    template, old, new = _setup_template
    path = tmp_path / "repo"
    copy_repo(template, path)
    return Repo.open(path), old, new


def _status(path: Path) -> str:
    return git(path, "status", "--porcelain", "--untracked-files=all")


def test_clean_checkout_lands_and_is_clean(setup) -> None:
    repo, old, new = setup
    res = fast_forward(repo, REF, old, new)
    assert res.moved and res.problem is None
    assert res.updated_checkouts == [repo.workdir]
    assert git(repo.workdir, "rev-parse", "HEAD") == new
    assert (repo.workdir / "src" / "c.txt").read_text() == "c\n"
    assert not (repo.workdir / "src" / "b.txt").exists()
    assert _status(repo.workdir) == ""
    assert not (repo.git_dir / "index.lock").exists()


def test_unrelated_modified_file_kept_byte_for_byte(setup) -> None:
    repo, old, new = setup
    data = b"mine\r\nno newline at end \xff"
    (repo.workdir / "keep.txt").write_bytes(data)
    assert ff_blockers(repo, repo.workdir, old, new) == []
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert (repo.workdir / "keep.txt").read_bytes() == data
    assert _status(repo.workdir) == "M keep.txt"


def test_staged_unrelated_change_kept_staged(setup) -> None:
    repo, old, new = setup
    (repo.workdir / "keep.txt").write_text("staged\n")
    (repo.workdir / "added.txt").write_text("new and staged\n")
    git(repo.workdir, "add", "keep.txt", "added.txt")
    (repo.workdir / "keep.txt").write_text("staged, then edited\n")
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert git(repo.workdir, "show", ":keep.txt") == "staged"
    assert (repo.workdir / "keep.txt").read_text() == "staged, then edited\n"
    assert _status(repo.workdir).splitlines() == ["A  added.txt", "MM keep.txt"]


def test_local_change_to_landed_path_refused_with_the_path(setup) -> None:
    repo, old, new = setup
    (repo.workdir / "a.txt").write_text("my edit\n")
    (repo.workdir / "keep.txt").write_text("unrelated\n")
    lines = ff_blockers(repo, repo.workdir, old, new)
    assert len(lines) == 1 and "a.txt" in lines[0] and "keep.txt" not in lines[0]
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and res.problem is not None and "a.txt" in res.problem
    assert "\n" not in res.problem
    assert git(repo.workdir, "rev-parse", "HEAD") == old
    assert (repo.workdir / "a.txt").read_text() == "my edit\n"


def test_staged_change_to_landed_path_refused(setup) -> None:
    repo, old, new = setup
    (repo.workdir / "src" / "c.txt").write_text("mine\n")
    git(repo.workdir, "add", "src/c.txt")
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and "src/c.txt" in (res.problem or "")


def test_ignored_file_in_the_way_refused(setup) -> None:
    repo, old, _ = setup
    new = commit_on(repo.workdir, old, {"secrets.env": "theirs\n"})
    (repo.workdir / "secrets.env").write_text("my secret\n")
    res = fast_forward(repo, REF, old, new)
    assert not res.moved
    assert res.problem is not None and "ignored secrets.env" in res.problem
    assert (repo.workdir / "secrets.env").read_text() == "my secret\n"
    assert git(repo.workdir, "rev-parse", "HEAD") == old


def test_untracked_file_in_the_way_refused(setup) -> None:
    repo, old, new = setup
    (repo.workdir / "src" / "c.txt").write_text("untracked\n")
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and "untracked src/c.txt" in (res.problem or "")
    assert (repo.workdir / "src" / "c.txt").read_text() == "untracked\n"


def test_untracked_file_where_a_directory_goes_refused(setup) -> None:
    repo, old, _ = setup
    new = commit_on(repo.workdir, old, {"d/x.txt": "x\n"})
    (repo.workdir / "d").write_text("a file, not a directory\n")
    lines = ff_blockers(repo, repo.workdir, old, new)
    assert len(lines) == 1 and "untracked d " in lines[0]


def _edit_commit(path: Path, name: str, content: str) -> str:
    (path / name).write_text(content)
    git(path, "commit", "-qam", f"edit {name}")
    return git(path, "rev-parse", "HEAD")


def _start_rebase(path: Path) -> None:
    _edit_commit(path, "keep.txt", "k2\n")
    env = {**os.environ, "GIT_SEQUENCE_EDITOR": "sed -i 1s/^pick/edit/"}
    sp.run(["git", "rebase", "-i", "HEAD~1"], cwd=path, env=env, check=True,
           capture_output=True)


def _conflict_branch(path: Path) -> None:
    git(path, "checkout", "-q", "-b", "other")
    _edit_commit(path, "keep.txt", "theirs\n")
    git(path, "checkout", "-q", "main")
    _edit_commit(path, "keep.txt", "ours\n")


def _start_merge(path: Path) -> None:
    _conflict_branch(path)
    git(path, "merge", "other", check=False)


def _start_cherry_pick(path: Path) -> None:
    _conflict_branch(path)
    git(path, "cherry-pick", "other", check=False)


def _start_revert(path: Path) -> None:
    _edit_commit(path, "keep.txt", "one\n")
    _edit_commit(path, "keep.txt", "two\n")
    git(path, "revert", "--no-edit", "HEAD~1", check=False)


def _start_bisect(path: Path) -> None:
    git(path, "bisect", "start")


def _start_am(path: Path) -> None:
    _conflict_branch(path)
    patch = git(path, "format-patch", "--stdout", "-1", "other")
    git(path, "am", input=patch + "\n", check=False)


@pytest.mark.parametrize("op, start", [
    ("rebase", _start_rebase), ("merge", _start_merge), ("cherry-pick", _start_cherry_pick),
    ("revert", _start_revert), ("bisect", _start_bisect), ("am", _start_am),
])
def test_operation_in_progress_refused(tmp_path: Path, op: str, start) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "keep.txt": "keep\n"})
    start(path)
    repo = Repo.open(path)
    assert in_progress(path) == op
    old = repo.read_ref(REF)
    assert old is not None
    new = commit_on(path, old, {"a.txt": "landed\n"})
    assert checkouts_of(repo, REF) == [path.resolve()]
    res = fast_forward(repo, REF, old, new)
    assert not res.moved
    article = "an" if op == "am" else "a"
    assert res.problem is not None and f"{article} {op} is in progress" in res.problem
    assert repo.read_ref(REF) == old
    assert (path / "a.txt").read_text() == "a\n"


def test_held_index_lock_refused(setup) -> None:
    repo, old, new = setup
    (repo.git_dir / "index.lock").write_bytes(b"")
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and "index.lock exists" in (res.problem or "")
    assert repo.read_ref(REF) == old
    assert (repo.git_dir / "index.lock").exists()


def test_linked_worktree_with_the_branch_updated_too(setup) -> None:
    repo, old, new = setup
    wt = repo.workdir.parent / "second"
    git(repo.workdir, "worktree", "add", "-q", "--force", str(wt), "main")
    (wt / "keep.txt").write_text("edited in the linked worktree\n")
    assert set(checkouts_of(repo, REF)) == {repo.workdir, wt.resolve()}
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert set(res.updated_checkouts) == {repo.workdir, wt.resolve()}
    for co in (repo.workdir, wt):
        assert git(co, "rev-parse", "HEAD") == new
        assert (co / "src" / "c.txt").read_text() == "c\n"
    assert _status(repo.workdir) == ""
    assert _status(wt) == "M keep.txt"


def test_dirty_linked_worktree_blocks_the_main_one_too(setup) -> None:
    repo, old, new = setup
    wt = repo.workdir.parent / "second"
    git(repo.workdir, "worktree", "add", "-q", "--force", str(wt), "main")
    (wt / "a.txt").write_text("mine\n")
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and str(wt.resolve()) in (res.problem or "")
    assert (repo.workdir / "a.txt").read_text() == "a\n"
    assert repo.read_ref(REF) == old


def test_lost_compare_and_swap_puts_the_checkout_back(setup) -> None:
    repo, old, new = setup
    (repo.workdir / "keep.txt").write_text("mine\n")
    # Another process holds the branch's lock: the CAS fails after the files were written.
    lock = repo.common_dir / "refs" / "heads" / "main.lock"
    lock.write_text(old + "\n")
    res = fast_forward(repo, REF, old, new)
    lock.unlink()
    assert not res.moved and "moved" in (res.problem or "")
    assert repo.read_ref(REF) == old
    assert (repo.workdir / "src" / "b.txt").read_text() == "b\n"
    assert not (repo.workdir / "src" / "c.txt").exists()
    assert _status(repo.workdir) == "M keep.txt"
    assert not (repo.git_dir / "index.lock").exists()


def test_not_a_fast_forward_refused(setup) -> None:
    repo, old, new = setup
    res = fast_forward(repo, REF, new, old)
    assert not res.moved and "not a fast-forward" in (res.problem or "")


# --------------------------------------------------------------------------- crashes

def _land_in_child(path: Path, old: str, new: str, point: str | None = None) -> tuple[int, str]:
    """The landing in a process of its own (forked), ended at crash ``point``: its exit code
    and output."""
    with tempfile.TemporaryFile() as out:
        pid = start_forked(lambda: print(fast_forward(Repo.open(path), REF, old, new)),
                           env={CRASH_ENV: point} if point else None,
                           stdout=out.fileno(), stderr=out.fileno())
        code = wait_forked(pid, 300)
        out.seek(0)
        return code if code is not None else -signal.SIGKILL, out.read().decode(errors="replace")


def _link_or_copy(src: str, dst: str) -> None:
    """For ``copytree``: a file of the checkout is hard-linked, one under ``.git`` copied.
    git and uet never write a checkout's file in place (they unlink it and create another),
    so a copy's landing or recovery leaves the template's file as it was; the git dir is
    written in place (reflogs are appended) and so is copied."""
    if f"{os.sep}.git{os.sep}" in src:
        shutil.copy2(src, dst)
    else:
        os.link(src, dst)


def copy_checkout(template: Path, path: Path) -> None:
    """A copy of the repository ``template`` (a checkout and its ``.git``) at ``path``: cheap
    (files hard-linked, see ``_link_or_copy``). Write a file of the copy only after
    unlinking it."""
    shutil.copytree(template, path, symlinks=True, copy_function=_link_or_copy)


def _template(root: Path, n: int) -> tuple[Path, str, str]:
    """A repository of ``n`` files whose landing changes ``2 * n``: ``n`` added, 60 % of the
    old ones modified, 40 % deleted. Its objects are packed, so each test's copy is cheap."""
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(root)}
    old_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        files = {f"d{i % 20}/f{i}.txt": f"{i}\n" for i in range(n)}
        files["keep.txt"] = "keep\n"
        path = make_repo(root / "repo", files)
        old = git(path, "rev-parse", "HEAD")
        cut = n * 6 // 10
        change: dict[str, str | None] = {f"d{i % 20}/f{i}.txt": f"{i} changed\n"
                                         for i in range(cut)}
        change.update({f"d{i % 20}/f{i}.txt": None for i in range(cut, n)})
        change.update({f"n{i % 30}/g{i}.txt": f"new {i}\n" for i in range(n)})
        new = commit_on(path, old, change)
        # ``new`` is on no ref: named for the repack only, its objects are packed too instead
        # of staying loose (hundreds of files each copy_checkout would copy).
        git(path, "update-ref", "refs/pack-me", new)
        git(path, "repack", "-adq")
        git(path, "update-ref", "-d", "refs/pack-me")
    finally:
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return path, old, new


@pytest.fixture(scope="module")
def big_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A landing of 1,000 files (500 added, 300 modified, 200 deleted): long enough to be killed
    at random moments inside it."""
    return _template(tmp_path_factory.mktemp("big"), 500)


@pytest.fixture(scope="module")
def crash_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A landing of 200 files (100 added, 60 modified, 40 deleted, in 50 directories): each
    named crash point is a fixed step, and half of a checkout is half of these."""
    return _template(tmp_path_factory.mktemp("crash"), 100)


@pytest.mark.parametrize("point, lands", [
    ("after-index-lock", False), ("mid-checkout", False), ("before-ref", False),
    ("after-ref", True), ("mid-index-commit", True),
])
def test_crash_then_recover_leaves_a_clean_checkout(tmp_path: Path, crash_template, point: str,
                                                    lands: bool) -> None:
    template, old, new = crash_template
    path = tmp_path / "repo"
    copy_checkout(template, path)
    # The user's own changes, which must survive byte for byte.
    (path / "keep.txt").unlink()
    (path / "keep.txt").write_bytes(b"my edit\r\n")
    (path / "mine.txt").write_text("untracked, mine\n")
    code, out = _land_in_child(path, old, new, point)
    assert code == 137, out
    repo = Repo.open(path)
    assert repo.read_ref(REF) == (new if lands else old)
    assert (repo.git_dir / "index.lock").exists() or point == "after-ref"

    if point != "after-ref":
        kept = recover(repo, REF, old, new, lock_owner_dead=False)
        assert "left as it is" in kept and (repo.git_dir / "index.lock").exists()

    what = recover(repo, REF, old, new, lock_owner_dead=True)
    assert "\n" not in what
    assert not (repo.git_dir / "index.lock").exists()
    assert not list(repo.git_dir.glob("uet-ff-index*"))
    tip = new if lands else old
    assert git(path, "rev-parse", "HEAD") == tip
    assert _status(path).splitlines() == ["M keep.txt", "?? mine.txt"]
    assert git(path, "diff", "--cached", "--name-only") == ""
    assert (path / "keep.txt").read_bytes() == b"my edit\r\n"
    assert (path / "mine.txt").read_text() == "untracked, mine\n"
    assert (path / "n0" / "g0.txt").exists() is lands
    assert (path / "d0" / "f60.txt").exists() is not lands  # one of the deleted
    fsck = sp.run(["git", "fsck", "--strict"], cwd=path, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr
    # Recovering again finds nothing to do; the landing can now be completed or retried.
    assert "already at" in recover(repo, REF, old, new, lock_owner_dead=False)
    if not lands:
        res = fast_forward(repo, REF, old, new)
        assert res.moved, res.problem
        assert _status(path).splitlines() == ["M keep.txt", "?? mine.txt"]


def test_dirty_submodule_not_touched_by_the_landing_kept(tmp_path: Path) -> None:
    sub = make_repo(tmp_path / "sub", {"s.txt": "s\n"})
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    git(path, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    git(path, "commit", "-qm", "add sub")
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"a.txt": "landed\n"})
    (path / "sub" / "s.txt").write_text("dirty inside the submodule\n")
    repo = Repo.open(path)
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert (path / "a.txt").read_text() == "landed\n"
    assert (path / "sub" / "s.txt").read_text() == "dirty inside the submodule\n"
    assert _status(path) == "M sub"


def _crash(path: Path, old: str, new: str, point: str) -> None:
    code, out = _land_in_child(path, old, new, point)
    assert code == 137, out


def test_recover_keeps_what_the_user_wrote_after_the_crash(setup) -> None:
    repo, old, new = setup
    _crash(repo.workdir, old, new, "before-ref")
    # Files are at new, the ref at old; the user edits a file only the landing had written.
    (repo.workdir / "src" / "c.txt").write_text("the user's own now\n")
    what = recover(repo, REF, old, new, lock_owner_dead=True)
    assert "undid" in what and "kept local edits in src/c.txt" in what
    assert (repo.workdir / "src" / "c.txt").read_text() == "the user's own now\n"
    assert (repo.workdir / "a.txt").read_text() == "a\n"
    assert (repo.workdir / "src" / "b.txt").read_text() == "b\n"
    assert _status(repo.workdir) == "?? src/c.txt"


def test_recover_finishes_every_checkout_of_the_branch(setup) -> None:
    repo, old, new = setup
    wt = repo.workdir.parent / "second"
    git(repo.workdir, "worktree", "add", "-q", "--force", str(wt), "main")
    _crash(repo.workdir, old, new, "mid-index-commit")
    assert repo.read_ref(REF) == new
    what = recover(repo, REF, old, new, lock_owner_dead=True)
    assert what.count("finished the landing") == 2, what
    for co in (repo.workdir, wt):
        assert _status(co) == ""
        assert (co / "src" / "c.txt").read_text() == "c\n"
        assert not (git_dir_of(co) / "index.lock").exists()


def test_recover_leaves_a_checkout_the_user_started_a_rebase_in(setup) -> None:
    repo, old, new = setup
    _crash(repo.workdir, old, new, "after-index-lock")
    (repo.git_dir / "index.lock").unlink()  # the user removed it and began a rebase
    (repo.git_dir / "rebase-merge").mkdir()
    (repo.git_dir / "rebase-merge" / "head-name").write_text(REF + "\n")
    what = recover(repo, REF, old, new, lock_owner_dead=True)
    assert "a rebase is in progress; checkout left as it is" in what


def test_branch_not_checked_out_just_moves(setup) -> None:
    repo, old, new = setup
    git(repo.workdir, "branch", "other", old)
    (repo.workdir / "a.txt").write_text("an edit on main's checkout\n")
    res = fast_forward(repo, "refs/heads/other", old, new)
    assert res.moved and res.updated_checkouts == []
    assert repo.read_ref("refs/heads/other") == new
    assert (repo.workdir / "a.txt").read_text() == "an edit on main's checkout\n"


def test_untracked_file_in_a_directory_the_landing_turns_into_a_file(setup) -> None:
    repo, old, _ = setup
    mid = commit_on(repo.workdir, old, {"x/a.txt": "a\n"})
    git(repo.workdir, "merge", "-q", "--ff-only", mid)
    new = commit_on(repo.workdir, mid, {"x/a.txt": None, "x": "now a file\n"})
    (repo.workdir / "x" / "notes.txt").write_text("mine\n")
    res = fast_forward(repo, REF, mid, new)
    assert not res.moved and "untracked x/notes.txt" in (res.problem or "")
    assert (repo.workdir / "x" / "notes.txt").read_text() == "mine\n"


def test_symlink_where_the_landing_makes_a_directory_refused(setup, tmp_path: Path) -> None:
    repo, old, _ = setup
    outside = tmp_path / "outside"
    outside.mkdir()
    new = commit_on(repo.workdir, old, {"d/x.txt": "x\n"})
    (repo.workdir / "d").symlink_to(outside)
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and "untracked d " in (res.problem or "")
    assert list(outside.iterdir()) == []


def test_ignored_directory_where_the_landing_puts_a_file_refused(setup) -> None:
    repo, old, _ = setup
    (repo.workdir / ".gitignore").write_text("secrets.env\ncache/\n")
    git(repo.workdir, "commit", "-qam", "ignore cache")
    old = git(repo.workdir, "rev-parse", "HEAD")
    new = commit_on(repo.workdir, old, {"cache": "a file now\n"})
    (repo.workdir / "cache").mkdir()
    (repo.workdir / "cache" / "big.bin").write_bytes(b"\0" * 100)
    res = fast_forward(repo, REF, old, new)
    assert not res.moved and "ignored cache" in (res.problem or "")
    assert (repo.workdir / "cache" / "big.bin").read_bytes() == b"\0" * 100


@pytest.mark.parametrize("lose_race", [False, True])
def test_same_size_edit_made_in_the_same_second_stays_a_local_change(tmp_path: Path,
                                                                     lose_race: bool) -> None:
    # git sees such an edit only through the index file's own mtime (racy-entry check): a
    # landing that rewrites the index must not hide it. Repeated: it is a matter of timing.
    for i in range(4):
        path = make_repo(tmp_path / f"r{i}", {"a.txt": "a\n", "keep.txt": "keep\n"})
        old = git(path, "rev-parse", "HEAD")
        new = commit_on(path, old, {"a.txt": "landed\n"})
        (path / "keep.txt").write_text("mine\n")
        repo = Repo.open(path)
        lock = repo.common_dir / "refs" / "heads" / "main.lock"
        if lose_race:
            lock.write_text(old + "\n")
        res = fast_forward(repo, REF, old, new)
        lock.unlink(missing_ok=True)
        assert res.moved is not lose_race
        assert _status(path) == "M keep.txt"


@pytest.mark.parametrize("point, lands", [("before-ref", False), ("after-ref", True),
                                          ("mid-checkout", False)])
def test_recover_a_landing_that_swaps_files_and_directories(tmp_path: Path, point: str,
                                                            lands: bool) -> None:
    path = make_repo(tmp_path / "repo", {"x/a.txt": "a\n", "x/b.txt": "b\n", "y": "file y\n",
                                         "run.sh": "#!/bin/sh\n", "keep.txt": "keep\n"})
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"x/a.txt": None, "x/b.txt": None, "x": "now a file\n",
                                "y": None, "y/inner.txt": "now a dir\n"})
    (path / "keep.txt").write_text("mine\n")
    _crash(path, old, new, point)
    repo = Repo.open(path)
    recover(repo, REF, old, new, lock_owner_dead=True)
    assert git(path, "rev-parse", "HEAD") == (new if lands else old)
    assert _status(path) == "M keep.txt"
    assert (path / "x").is_file() is lands and (path / "y").is_dir() is lands
    fsck = sp.run(["git", "fsck", "--strict"], cwd=path, capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stderr


def test_recover_recognises_files_git_wrote_through_autocrlf(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n", "keep.txt": "keep\n"})
    git(path, "config", "core.autocrlf", "true")
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"a.txt": "a\nlanded\n", "new.txt": "one\ntwo\n"})
    _crash(path, old, new, "before-ref")
    assert (path / "new.txt").read_bytes() == b"one\r\ntwo\r\n"  # converted on the way out
    recover(Repo.open(path), REF, old, new, lock_owner_dead=True)
    assert not (path / "new.txt").exists()
    assert _status(path) == ""


def test_recover_a_symlink_that_becomes_a_directory(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (path / "d").symlink_to("a.txt")
    git(path, "add", "d")
    git(path, "commit", "-qm", "link")
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"d": None, "d/x.txt": "x\n"})
    for point, lands in (("before-ref", False), ("after-ref", True)):
        _crash(path, old, new, point)
        repo = Repo.open(path)
        recover(repo, REF, old, new, lock_owner_dead=True)
        assert (path / "d").is_symlink() is not lands
        assert _status(path) == ""
        if lands:
            assert (path / "d" / "x.txt").read_text() == "x\n"


def test_a_filter_planted_after_open_does_not_run_while_landing(setup, tmp_path: Path) -> None:
    repo, old, _ = setup  # opened (filters pinned) before the tool below ran
    marker = tmp_path / "planted-ran"
    for kind in ("smudge", "clean"):
        git(repo.workdir, "config", f"filter.evil.{kind}", f"touch {marker}; cat")
    new = commit_on(repo.workdir, old, {".gitattributes": "* filter=evil\n", "a.txt": "a2\n"})
    marker.unlink(missing_ok=True)  # commit_on's own git ran it; uet's must not
    res = fast_forward(repo, REF, old, new)
    assert res.moved, res.problem
    assert not marker.exists()
    assert (repo.workdir / "a.txt").read_text() == "a2\n"


def _live_in_group(pgid: int) -> bool:
    """Whether a process of group ``pgid`` other than a zombie is left."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def test_sigkill_at_random_moments_then_recover(tmp_path: Path, big_template) -> None:
    """A real ``kill -9`` of the landing's process group (git children included) at seeded
    random moments of a 1,000-file landing; each time recover leaves a clean checkout."""
    template, old, new = big_template
    rng = random.Random(20261201)
    # How long a whole landing takes here (and now: the machine may be busy), to kill within.
    start = time.monotonic()
    copy_checkout(template, tmp_path / "timed")
    code, out = _land_in_child(tmp_path / "timed", old, new)
    assert code == 0, out
    whole = time.monotonic() - start
    for i in range(6):
        path = tmp_path / f"r{i}"
        child_start = time.monotonic()
        copy_checkout(template, path)
        (path / "keep.txt").unlink()
        (path / "keep.txt").write_bytes(b"my edit\r\n")
        child = start_forked(lambda p=path: print(fast_forward(Repo.open(p), REF, old, new)),
                             new_session=True)
        time.sleep(max(0.0, rng.uniform(0.3, 1.1) * whole - (time.monotonic() - child_start)))
        try:
            os.killpg(child, signal.SIGKILL)
        except ProcessLookupError:  # not yet its own group: killed before it started git
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        assert wait_forked(child, 30) is not None
        # The group's git children are gone too. Zombies do not count: an orphan re-parented
        # to this process (a child subreaper once an in-process uet ran here) stays a zombie
        # until reaped, and a zombie holds no lock and writes nothing.
        deadline = time.monotonic() + 30
        while _live_in_group(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _live_in_group(child), "the landing's git children outlived the kill"
        repo = Repo.open(path)
        at = repo.read_ref(REF)
        assert at in (old, new)
        recover(repo, REF, old, new, lock_owner_dead=True)
        assert not (repo.git_dir / "index.lock").exists()
        assert git(path, "rev-parse", "HEAD") == at
        assert _status(path) == "M keep.txt", f"kill {i}"
        assert (path / "keep.txt").read_bytes() == b"my edit\r\n"
        fsck = sp.run(["git", "fsck", "--strict"], cwd=path, capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stderr


def test_recover_takes_back_files_git_was_killed_while_writing(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"a.txt": "a\n" * 50, "keep.txt": "keep\n"})
    old = git(path, "rev-parse", "HEAD")
    new = commit_on(path, old, {"a.txt": "landed\n" * 50, "n/new.txt": "new file\n" * 50})
    _crash(path, old, new, "before-ref")
    # What a kill inside git's checkout leaves: a file created, not yet fully written.
    (path / "n" / "new.txt").write_bytes(b"new file\nnew f")
    (path / "a.txt").write_bytes(b"")
    recover(Repo.open(path), REF, old, new, lock_owner_dead=True)
    assert not (path / "n").exists()
    assert (path / "a.txt").read_text() == "a\n" * 50
    assert _status(path) == ""
