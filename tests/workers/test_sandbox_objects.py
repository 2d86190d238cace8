"""A sandboxed tool must not be able to change objects that already exist: they are what the
base, the candidates and the target are made of. It writes new objects into a private object
directory; after it exits they are imported re-hashed, existing ones skipped, forged ones
rejected."""

from __future__ import annotations

import hashlib
import subprocess as sp
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo import objimport
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import SandboxConfig
from uet_git.workers import sandbox
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import ProcResult, run_process

pytestmark = pytest.mark.skipif(sandbox.available() is not None,
                                reason=f"no sandbox here: {sandbox.available()}")

# The path of object $1's loose file in the store the sandboxed git writes (the private one).
LOOSE = 'loose() { echo "$(git rev-parse --git-common-dir)/objects/$(echo $1 | cut -c1-2)/' \
        '$(echo $1 | cut -c3-)"; }; '


@pytest.fixture
def env(tmp_path: Path):
    path = make_repo(tmp_path / "repo", {"t.txt": "original\n"})
    git(path, "config", "user.name", "T")
    git(path, "config", "user.email", "t@example.com")
    repo = Repo.open(path)
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(git(path, "rev-parse", "HEAD"))
    yield repo, wt.path, tmp_path
    pool.release(wt)
    pool.close(remove=True)


def _run(repo: Repo, wt: Path, tmp: Path, cmd: str) -> tuple[ProcResult, str]:
    plan = sandbox.sandbox_for(repo, wt, SandboxConfig())
    assert plan is not None
    res = run_process(cmd, cwd=wt, env={}, timeout=30, stdout_path=tmp / "out",
                      stderr_path=tmp / "err", sandbox=plan)
    return res, (tmp / "err").read_text()


def _store(repo: Repo) -> dict[str, str]:
    """Every file of the real object store with the hash of its bytes."""
    objects = repo.common_dir / "objects"
    return {str(p.relative_to(objects)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(objects.rglob("*")) if p.is_file()}


def _fsck(repo: Repo) -> None:
    proc = sp.run(["git", "fsck", "--strict", "--no-progress", "--no-dangling"],
                  cwd=repo.workdir, capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stdout + proc.stderr


def _private_gone(repo: Repo) -> bool:
    """No private object directory is left holding anything (an empty one may stay)."""
    d = repo.common_dir / "uet" / "sandbox-objects"
    return not d.exists() or all(
        objimport.is_fresh_store(p, [sandbox.STORE_MOUNT]) for p in d.iterdir())


def test_a_tool_cannot_overwrite_an_existing_object(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {"t.txt": "original\n"})
    blob = git(path, "rev-parse", "HEAD:t.txt")
    repo = Repo.open(path)
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(git(path, "rev-parse", "HEAD"))
    try:
        plan = sandbox.sandbox_for(repo, wt.path, SandboxConfig())
        obj = repo.common_dir / "objects" / blob[:2] / blob[2:]
        cmd = (f"new=$(printf 'evil\\n' | git hash-object -w --stdin); "
               f"src=$(git rev-parse --git-common-dir)/objects/$(echo $new | cut -c1-2)/"
               f"$(echo $new | cut -c3-); chmod u+w {obj}; cp $src {obj}")
        run_process(cmd, cwd=wt.path, env={}, timeout=30, stdout_path=tmp_path / "out",
                    stderr_path=tmp_path / "err", sandbox=plan)
    finally:
        pool.release(wt)
        pool.close(remove=True)
    assert git(path, "cat-file", "-p", blob) == "original"


def test_a_forged_loose_object_named_after_an_existing_one_is_not_imported(env) -> None:
    repo, wt, tmp = env
    blob = git(repo.workdir, "rev-parse", "HEAD:t.txt")
    before = _store(repo)
    # Both ways to name the existing object's file: in the store the tool's git writes, and in
    # the real store as mounted read-only (STORE_MOUNT).
    res, _err = _run(repo, wt, tmp, LOOSE + (
        f"new=$(printf 'evil\\n' | git hash-object -w --stdin); "
        f"mkdir -p $(dirname $(loose {blob})); cp $(loose $new) $(loose {blob}); "
        f"git cat-file -p {blob}; "
        f"cp $(loose $new) {sandbox.STORE_MOUNT}/{blob[:2]}/{blob[2:]} && echo WROTE-REAL"))
    assert "WROTE-REAL" not in (tmp / "out").read_text()
    assert git(repo.workdir, "cat-file", "-p", blob) == "original"
    assert {k: v for k, v in _store(repo).items() if k in before} == before
    assert _private_gone(repo)
    _fsck(repo)
    assert res.returncode is not None


def test_a_forged_object_under_a_new_name_is_rejected_and_said(env) -> None:
    repo, wt, tmp = env
    # "evil" stored under the name of "good": a name the store does not have yet.
    good = git(repo.workdir, "hash-object", "--stdin", input="good\n")
    res, err = _run(repo, wt, tmp, LOOSE + (
        f"new=$(printf 'evil\\n' | git hash-object -w --stdin); "
        f"mkdir -p $(dirname $(loose {good})); cp $(loose $new) $(loose {good})"))
    assert res.ok, err
    assert sp.run(["git", "cat-file", "-e", good], cwd=repo.workdir).returncode != 0
    assert f"were not imported ({good[:12]})" in err
    # "evil" itself is a genuine object the tool wrote: imported under its own name.
    evil = git(repo.workdir, "hash-object", "--stdin", input="evil\n")
    assert git(repo.workdir, "cat-file", "-p", evil) == "evil"
    _fsck(repo)


def test_a_tool_cannot_overwrite_or_delete_a_pack(env) -> None:
    repo, wt, tmp = env
    git(repo.workdir, "repack", "-adq")
    packs = sorted((repo.common_dir / "objects" / "pack").glob("*.pack"))
    assert packs
    before = _store(repo)
    real = repo.common_dir / "objects"
    attacks = []
    for p in (repo.common_dir / "objects" / "pack").iterdir():
        for where in (str(p), f"{sandbox.STORE_MOUNT}/pack/{p.name}"):
            # (not ``: >``: a failed redirection of a special builtin ends sh)
            attacks.append(f"chmod u+w {where}; echo x > {where}; rm -f {where}")
    attacks.append(f"mount -o remount,rw {real}; mount -o remount,rw {sandbox.STORE_MOUNT}; "
                   f"rm -rf {sandbox.STORE_MOUNT}/pack {real}/pack")
    _res, err = _run(repo, wt, tmp, "; ".join(attacks) + "; git cat-file -p HEAD:t.txt")
    assert (tmp / "out").read_text() == "original\n", err  # the tool itself still reads it
    assert _store(repo) == before
    assert git(repo.workdir, "cat-file", "-p", "HEAD:t.txt") == "original"
    _fsck(repo)


def test_a_tool_cannot_delete_objects(env) -> None:
    repo, wt, tmp = env
    before = _store(repo)
    real = repo.common_dir / "objects"
    # (its own store's info/alternates goes too: after that the tool sees no object at all)
    _res, err = _run(repo, wt, tmp, (
        "git prune --expire=now; git gc -q --prune=now; git repack -adq; "
        f"git cat-file -p HEAD:t.txt; rm -rf {real}/* {sandbox.STORE_MOUNT}/*"))
    assert (tmp / "out").read_text().strip() == "original", err
    assert {k: v for k, v in _store(repo).items() if k in before} == before
    assert git(repo.workdir, "cat-file", "-p", "HEAD:t.txt") == "original"
    _fsck(repo)
    assert _private_gone(repo)


def test_the_tools_commits_reach_the_store_whatever_its_environment(env) -> None:
    repo, wt, tmp = env
    # env -i: the private store is where <common>/objects is, not an environment variable.
    res, err = _run(repo, wt, tmp, (
        "echo new > f.txt && git add f.txt && git commit -qm one && "
        "env -i PATH=/usr/bin:/bin HOME=/nonexistent git -c user.name=x -c user.email=x@x "
        "commit -q --allow-empty -m two"))
    assert res.ok, err
    head = git(wt, "rev-parse", "HEAD")
    assert git(repo.workdir, "log", "--format=%s", head) == "two\none\ninitial"
    assert git(repo.workdir, "show", f"{head}:f.txt") == "new"
    assert _private_gone(repo)
    _fsck(repo)


def test_a_tool_cannot_remount_the_repository_writable(env) -> None:
    repo, wt, tmp = env
    config = (repo.common_dir / "config").read_bytes()
    _res, err = _run(repo, wt, tmp, (
        f"mount -o remount,rw {repo.workdir}; echo '[core]' >> {repo.common_dir}/config; "
        "mknod disk b 8 0 && echo MADE-NODE; grep CapEff /proc/self/status"))
    assert (repo.common_dir / "config").read_bytes() == config
    out = (tmp / "out").read_text()
    assert "MADE-NODE" not in out, err
    eff = int(out.split("CapEff:")[1].split()[0], 16)
    for cap in (21, 27, 2):  # CAP_SYS_ADMIN, CAP_MKNOD, CAP_DAC_READ_SEARCH
        assert not eff & (1 << cap), out


def test_objects_left_by_a_killed_uet_are_imported_at_the_next_command(env) -> None:
    repo, wt, tmp = env
    plan = sandbox.sandbox_for(repo, wt, SandboxConfig())
    assert plan is not None
    private = Path(plan.private)
    private.mkdir(parents=True)
    # What a command would have left behind: its object, in its private directory.
    oid = sp.run(["git", "hash-object", "-w", "--stdin"], cwd=repo.workdir, input="left\n",
                 text=True, capture_output=True, check=True,
                 env={"PATH": "/usr/bin:/bin", "GIT_OBJECT_DIRECTORY": str(private)}
                 ).stdout.strip()
    assert sp.run(["git", "cat-file", "-e", oid], cwd=repo.workdir).returncode != 0
    res, err = _run(repo, wt, tmp, "true")
    assert res.ok, err
    assert git(repo.workdir, "cat-file", "-p", oid) == "left"
    assert _private_gone(repo)


def test_recover_objects_imports_a_leftover_directory(env) -> None:
    repo, wt, tmp = env
    assert sandbox.recover_objects(repo, wt) is None
    plan = sandbox.sandbox_for(repo, wt, SandboxConfig())
    assert plan is not None
    private = Path(plan.private)
    private.mkdir(parents=True)
    oid = sp.run(["git", "hash-object", "-w", "--stdin"], cwd=repo.workdir, input="kept\n",
                 text=True, capture_output=True, check=True,
                 env={"PATH": "/usr/bin:/bin", "GIT_OBJECT_DIRECTORY": str(private)}
                 ).stdout.strip()
    done = sandbox.recover_objects(repo, wt)
    assert done is not None and done.written == 1 and not done.rejected
    assert git(repo.workdir, "cat-file", "-p", oid) == "kept"
    assert not private.exists()
    assert sandbox.recover_objects(repo, tmp / "not-a-worktree") is None


def test_a_private_store_the_tool_changed_is_made_again(env) -> None:
    repo, wt, tmp = env
    plan = sandbox.sandbox_for(repo, wt, SandboxConfig())
    assert plan is not None
    res, err = _run(repo, wt, tmp, "true")
    assert res.ok, err
    assert objimport.is_fresh_store(Path(plan.private), [sandbox.STORE_MOUNT])  # kept, reused
    # A tool that adds an alternate of its own (no object written): gone by the next command.
    res, err = _run(repo, wt, tmp, "echo /elsewhere >> $(git rev-parse --git-common-dir)/"
                                   "objects/info/alternates")
    assert res.ok, err
    assert objimport.is_fresh_store(Path(plan.private), [sandbox.STORE_MOUNT])  # made again
    res, err = _run(repo, wt, tmp, "cat $(git rev-parse --git-common-dir)/objects/info/"
                                   "alternates")
    assert (tmp / "out").read_text() == f"{sandbox.STORE_MOUNT}\n"
