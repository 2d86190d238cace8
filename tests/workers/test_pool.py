"""WorktreePool: reuse by reset, includes, keep_ignored, crashed runs' orphans, concurrent pools."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.workers.pool import WorktreePool, copy_includes, snapshot_orphan


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = make_repo(tmp_path / "repo", {
        "a.txt": "a\n", ".gitignore": ".env\nconfig/*.local\n.venv/\n", "config/app.cfg": "x\n",
    })
    return Repo.open(path)


def _commit(repo: Repo, name: str, content: str) -> str:
    (repo.workdir / name).write_text(content)
    git(repo.workdir, "add", name)
    git(repo.workdir, "commit", "-qm", f"add {name}")
    return git(repo.workdir, "rev-parse", "HEAD")


def _worktree_paths(repo: Repo) -> list[str]:
    out = git(repo.workdir, "worktree", "list", "--porcelain")
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")]


def test_acquire_creates_then_reuses_by_reset(repo: Repo) -> None:
    base1 = git(repo.workdir, "rev-parse", "HEAD")
    base2 = _commit(repo, "b.txt", "b\n")
    pool = WorktreePool(repo, size=2)
    w0 = pool.acquire(base1, label="run/ws-a/1")
    w1 = pool.acquire(base2)
    assert (w0.slot, w1.slot) == (0, 1)
    assert w0.path == repo.common_dir / "uet" / "worktrees" / "0"
    assert git(w0.path, "rev-parse", "HEAD") == base1 and not (w0.path / "b.txt").exists()
    assert git(w1.path, "rev-parse", "HEAD") == base2
    (w0.path / "a.txt").write_text("tool\n")
    (w0.path / "junk.txt").write_text("junk\n")
    pool.release(w0)
    w = pool.acquire(base2)
    assert w.slot == 0 and w.base == base2
    assert git(w.path, "rev-parse", "HEAD") == base2
    assert git(w.path, "status", "--porcelain", "--ignored") == ""
    assert git(repo.workdir, "status", "--porcelain") == ""  # the user's checkout sees nothing
    pool.release(w)
    pool.release(w1)
    pool.close(remove=True)
    assert _worktree_paths(repo) == [str(repo.workdir)]
    assert not w0.path.exists() and not w1.path.exists()


def test_includes_and_keep_ignored(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    (repo.workdir / ".env").write_text("SECRET=1\n")
    (repo.workdir / "config" / "db.local").write_text("local\n")
    (repo.workdir / "config" / "app.cfg").write_text("user's uncommitted edit\n")  # tracked
    (repo.workdir / "notes.txt").write_text("untracked, not ignored\n")
    pool = WorktreePool(repo, size=1, keep_ignored=True,
                        include=[".env", "config/*", "notes.txt"])
    w = pool.acquire(base)
    assert (w.path / ".env").read_text() == "SECRET=1\n"
    assert (w.path / "config" / "db.local").read_text() == "local\n"
    assert (w.path / "config" / "app.cfg").read_text() == "x\n"
    assert not (w.path / "notes.txt").exists()
    assert git(w.path, "status", "--porcelain") == ""  # includes are never a "change"
    (w.path / ".env").write_text("tool changed it\n")
    (w.path / ".venv").mkdir()
    (w.path / ".venv" / "dep").write_text("warm cache\n")
    assert copy_includes(repo, w.path, [".env"]) == [".env"]
    assert copy_includes(repo, w.path, ["/etc/passwd", "../x", "", "**/*.local"]) == []
    assert copy_includes(repo, w.path, [".env"]) == []  # unchanged: not copied again
    (w.path / ".env").write_text("tool changed it\n")
    pool.release(w)
    w = pool.acquire(base)
    assert (w.path / ".env").read_text() == "SECRET=1\n"
    assert (w.path / ".venv" / "dep").read_text() == "warm cache\n"
    pool.close(remove=True)


def test_two_pools_never_share_a_slot(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    a = WorktreePool(repo, size=1)
    b = WorktreePool(repo, size=1)
    wa = a.acquire(base)
    wb = b.acquire(base)
    assert wa.slot != wb.slot
    a.release(wa)
    a.close(remove=False)
    b.release(wb)
    b.close(remove=True)
    c = WorktreePool(repo, size=1)
    assert c.orphans() == []
    assert c.acquire(base).slot == wa.slot  # a clean stale slot is reused
    c.close(remove=True)


_CRASH = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from uet_git.gitrepo.repo import Repo
    from uet_git.workers.pool import WorktreePool
    repo = Repo.open(sys.argv[1])
    pool = WorktreePool(repo, size=2)
    w0 = pool.acquire(sys.argv[2], label="run1/ws-dirty/1")
    w1 = pool.acquire(sys.argv[2], label="run1/ws-commit/1")
    w2 = pool.acquire(sys.argv[2], label="run1/ws-clean/1")
    (w0.path / "a.txt").write_text("unrecorded work\\n")
    (w0.path / "new.txt").write_text("new\\n")
    (w1.path / "c.txt").write_text("c\\n")
    os.system(f"cd {w1.path} && git add c.txt && git commit -qm 'tool commit'")
    os.kill(os.getpid(), 9)
""")


def test_crashed_run_leaves_orphans_that_are_never_reset_until_released(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    proc = subprocess.run([sys.executable, "-c", _CRASH, str(repo.workdir), base],
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    pool = WorktreePool(repo, size=2)
    orphans = pool.orphans()
    assert [(o.slot, o.label, o.base) for o in orphans] == [
        (0, "run1/ws-dirty/1", base), (1, "run1/ws-commit/1", base)]
    # New work never lands in an orphan's slot; the clean one (slot 2) is reused.
    w = pool.acquire(base)
    assert w.slot == 2 and w.label is None
    w_new = pool.acquire(base)
    assert w_new.slot == 3
    assert (orphans[0].path / "a.txt").read_text() == "unrecorded work\n"

    commit = snapshot_orphan(repo, orphans[0])
    assert commit is not None
    assert git(repo.workdir, "rev-parse", f"{commit}^") == base
    assert git(repo.workdir, "show", f"{commit}:a.txt") == "unrecorded work"
    assert git(repo.workdir, "show", f"{commit}:new.txt") == "new"
    assert "run1/ws-dirty/1" in git(repo.workdir, "log", "-1", "--format=%B", commit)
    c2 = snapshot_orphan(repo, orphans[1])
    assert c2 and git(repo.workdir, "show", f"{c2}:c.txt") == "c"
    assert "its HEAD was" in git(repo.workdir, "log", "-1", "--format=%B", c2)

    pool.release(w)
    pool.close(remove=True)  # orphans not released and busy worktrees are kept
    assert orphans[0].path.exists() and orphans[1].path.exists() and w_new.path.exists()
    assert not w.path.exists()

    pool = WorktreePool(repo, size=2)
    assert [o.slot for o in pool.orphans()] == [0, 1]
    for o in pool.orphans():
        pool.release(o)  # the engine recorded them
    w = pool.acquire(base)
    assert w.slot == 0 and git(w.path, "status", "--porcelain") == ""
    pool.release(w)
    pool.close(remove=True)
    assert _worktree_paths(repo) == [str(repo.workdir)]
    assert subprocess.run(["git", "fsck", "--no-progress"], cwd=repo.workdir).returncode == 0


def test_snapshot_orphan_without_changes_is_none(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    w = pool.acquire(base)
    assert snapshot_orphan(repo, w) is None
    pool.close(remove=True)


def test_concurrent_acquires_from_two_pools(repo: Repo) -> None:
    """git worktree add/list race with themselves (same admin dir names from two roots):
    the pool serialises them, so parallel workers all get a worktree."""
    import threading

    base = git(repo.workdir, "rev-parse", "HEAD")
    for _ in range(3):
        pools = [WorktreePool(repo, size=3), WorktreePool(repo, root=repo.uet_dir / "int", size=3)]
        got, errors = [], []

        def take(pool: WorktreePool, got: list, errors: list) -> None:
            try:
                got.append((pool, pool.acquire(base)))
            except Exception as exc:  # collected: a thread's exception would be lost
                errors.append(repr(exc))

        threads = [threading.Thread(target=take, args=(p, got, errors)) for p in pools * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and len(got) == 6
        assert len({w.path for _, w in got}) == 6
        assert all(git(w.path, "rev-parse", "HEAD") == base for _, w in got)
        for pool, w in got:
            pool.release(w)
        for pool in pools:
            pool.close(remove=True)
    assert _worktree_paths(repo) == [str(repo.workdir)]


def test_crash_while_resetting_is_not_an_orphan(repo: Repo) -> None:
    base = git(repo.workdir, "rev-parse", "HEAD")
    other = _commit(repo, "b.txt", "b\n")
    pool = WorktreePool(repo, size=1)
    w = pool.acquire(base, "run/ws/1")
    meta = repo.uet_dir / "worktrees" / "0.json"
    assert '"preparing": false' in meta.read_text()
    # The ws's result was recorded and the slot released; the next acquire dies mid-reset.
    (w.path / "half-reset.txt").write_text("left over\n")
    meta.write_text('{"base": null, "label": null, "preparing": true}')
    pool.close(remove=False)
    pool = WorktreePool(repo, size=1)
    assert pool.orphans() == []
    w = pool.acquire(other)
    assert w.slot == 0 and not (w.path / "half-reset.txt").exists()
    assert git(w.path, "rev-parse", "HEAD") == other
    pool.release(w)
    pool.close(remove=True)


def test_a_worktree_is_reset_only_once_nothing_runs_in_it(repo: Repo, tmp_path: Path) -> None:
    """A daemon left working in a released slot (escaped any sweep: not ours at all) is killed
    before the slot is reset for the next workstream; its late write never lands there."""
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    w = pool.acquire(base)
    pidfile = tmp_path / "daemon.pid"
    daemon = subprocess.Popen(
        ["setsid", "sh", "-c", f"echo $$ > {pidfile}; sleep 0.6; echo x > leak; sleep 30"],
        cwd=w.path, env={}, start_new_session=True)
    holder = subprocess.Popen(["sh", "-c", f"cd /; exec 3>>{w.path}/held.log; exec sleep 30"],
                              start_new_session=True)
    try:
        end = time.monotonic() + 5
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.01)
        while not (w.path / "held.log").exists() and time.monotonic() < end:
            time.sleep(0.01)
        pool.release(w)
        again = pool.acquire(base)
        assert again.slot == w.slot
        assert daemon.wait(5) is not None and holder.wait(5) is not None
        time.sleep(0.8)
        assert not (again.path / "leak").exists()
        assert git(again.path, "status", "--porcelain", "--ignored") == ""
    finally:
        for p in (daemon, holder):
            p.kill()
            p.wait()
    pool.release(again)
    pool.close(remove=True)


def test_a_released_slot_is_acquired_with_one_meta_write(repo: Repo, tmp_path: Path) -> None:
    """A released slot's meta already says its content is recorded: the next acquire does not
    write ``preparing`` before the reset (``[worktree] setup`` runs mid-reset and sees the
    meta as it is then), it writes the new base once, after it; a crash mid-reset leaves a
    released slot, taken without an orphan check."""
    base = git(repo.workdir, "rev-parse", "HEAD")
    other = _commit(repo, "b.txt", "b\n")
    seen = tmp_path / "seen"
    seen.mkdir()
    meta = repo.uet_dir / "worktrees" / "0.json"
    pool = WorktreePool(repo, size=1, setup=[f"cp '{meta}' '{seen}/'$(ls '{seen}' | wc -l)"])
    w = pool.acquire(base, "run/ws/1")
    pool.release(w)
    w = pool.acquire(other, "run/ws/2")
    assert json.loads((seen / "0").read_text())["preparing"] is True  # a new slot
    mid = json.loads((seen / "1").read_text())
    assert mid["released"] is True and mid["label"] == "run/ws/1"
    assert json.loads(meta.read_text())["label"] == "run/ws/2"
    pool.release(w)
    pool.close(remove=True)


def _holder(path: Path) -> subprocess.Popen[bytes]:
    """A process outside any sandbox with a file open in ``path``."""
    proc = subprocess.Popen(["sh", "-c", f"cd /; exec 3>>{path}/held.log; exec sleep 30"],
                            start_new_session=True)
    end = time.monotonic() + 5
    while not (path / "held.log").exists() and time.monotonic() < end:
        time.sleep(0.01)
    return proc


def test_a_slot_given_back_contained_is_not_swept_one_given_back_plainly_is(repo: Repo) -> None:
    """``contained`` (every command run there was in a PID-namespace sandbox and exited) is
    the caller's word that nothing it started lives: the next acquire skips the /proc sweep,
    once. Without it (the default, and after every acquire) the sweep runs."""
    base = git(repo.workdir, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    w = pool.acquire(base)
    assert w.contained is False
    holder = _holder(w.path)
    try:
        w.contained = True
        pool.release(w)
        w = pool.acquire(base)
        assert holder.poll() is None  # not swept: the word was taken
        assert w.contained is False
        pool.release(w)  # plainly
        w = pool.acquire(base)
        assert holder.wait(5) is not None  # swept
    finally:
        holder.kill()
        holder.wait()
    pool.release(w)
    pool.close(remove=True)
