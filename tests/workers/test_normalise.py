"""normalise: real tools (shell scripts) in real worktrees, results checked with the git CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import Workstream
from uet_git.workers.normalise import normalise
from uet_git.workers.pool import WorktreePool
from uet_git.workers.process import run_process

LONG = "".join(f"line {i} of a file that is long enough to be recognised as renamed\n"
               for i in range(20))


@pytest.fixture
def env(tmp_path: Path):
    path = make_repo(tmp_path / "repo", {
        "keep.txt": "keep\n", "edit.txt": "one\ntwo\n", "gone.txt": "bye\n",
        "script.sh": "#!/bin/sh\necho hi\n", "old/name.txt": LONG,
        ".gitignore": "*.log\n/build/\n",
    })
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    pool = WorktreePool(repo, size=1)
    wt = pool.acquire(base, "run/ws/1")
    yield repo, wt.path, base, tmp_path, pool, wt
    pool.release(wt)
    pool.close(remove=True)


WS = Workstream(id="ws-x", title="Make the change")


def _tool(wt: Path, tmp: Path, script: str) -> bytes:
    """Run a tool script in the worktree like a worker does; return its stdout."""
    res = run_process(script, cwd=wt, env={"UET_LOG": str(tmp)}, timeout=30,
                      stdout_path=tmp / "tool.out", stderr_path=tmp / "tool.err")
    assert res.returncode == 0, (tmp / "tool.err").read_text()
    return (tmp / "tool.out").read_bytes()


def _norm(repo: Repo, wt: Path, base: str, output: str = "worktree", stdout: bytes = b"",
          ws: Workstream = WS):
    return normalise(repo, wt, base, ws=ws, run="20261125-101502-3f2a", attempt=2, tool="shell",
                     output=output, stdout=stdout)


def _show(repo: Repo, *args: str) -> str:
    return git(repo.workdir, *args)


def test_every_kind_of_change_in_one_commit(env) -> None:
    repo, wt, base, tmp, *_ = env
    _tool(wt, tmp, """
        echo new > added.txt
        printf 'one\\n2\\n' > edit.txt
        rm gone.txt
        chmod +x script.sh
        mkdir -p new && git mv old/name.txt new/name.txt
        printf '\\000\\001\\002\\377binary' > data.bin
        ln -s keep.txt link
        echo ignored > debug.log
        mkdir -p build && echo ignored > build/out.o
    """)
    norm = _norm(repo, wt, base)
    assert norm.error is None and norm.patch and norm.tool_commits == []
    patch = norm.patch
    assert _show(repo, "rev-parse", f"{patch}^@") == base  # exactly one parent: the base
    status = _show(repo, "diff", "--name-status", "-M", base, patch).splitlines()
    assert sorted(status) == sorted([
        "A\tadded.txt", "A\tdata.bin", "D\tgone.txt", "A\tlink", "M\tedit.txt",
        "M\tscript.sh", "R100\told/name.txt\tnew/name.txt"])
    ls = _show(repo, "ls-tree", "-r", patch)
    assert "100755 blob" in next(line for line in ls.splitlines() if line.endswith("script.sh"))
    assert "120000 blob" in next(line for line in ls.splitlines() if line.endswith("link"))
    assert _show(repo, "cat-file", "-p", f"{patch}:link") == "keep.txt"
    raw = subprocess.run(["git", "cat-file", "blob", f"{patch}:data.bin"], cwd=repo.workdir,
                         capture_output=True, check=True).stdout
    assert raw == b"\0\1\2\377binary"
    assert "debug.log" not in ls and "build/" not in ls
    msg = _show(repo, "log", "-1", "--format=%B", patch)
    assert msg.splitlines()[0] == "Make the change"
    trailers = subprocess.run(["git", "interpret-trailers", "--parse"], input=msg, text=True,
                              capture_output=True, cwd=repo.workdir).stdout
    assert trailers.splitlines() == ["Uet-Workstream: ws-x", "Uet-Run: 20261125-101502-3f2a",
                                     "Uet-Tool: shell", "Uet-Attempt: 2"]
    by_path = {c.path: c for c in norm.changes}
    assert set(by_path) == {"added.txt", "data.bin", "gone.txt", "link", "edit.txt",
                            "script.sh", "new/name.txt"}
    assert by_path["new/name.txt"].status == "R"
    assert by_path["new/name.txt"].old_path == "old/name.txt"
    assert by_path["gone.txt"].status == "D"
    assert (by_path["edit.txt"].lines_added, by_path["edit.txt"].lines_removed) == (1, 1)


def test_tool_commits_are_squashed_with_their_messages(env) -> None:
    repo, wt, base, tmp, *_ = env
    _tool(wt, tmp, """
        echo a > a.txt && git add a.txt && git commit -qm 'Add a' -m 'Because a.'
        echo b > b.txt && git add b.txt && git commit -qm 'Add b' -m 'Signed-off-by: Tool <t@x>'
        echo uncommitted > c.txt
    """)
    norm = _norm(repo, wt, base)
    assert norm.patch and norm.error is None
    assert len(norm.tool_commits) == 2
    assert norm.tool_commits[0].endswith("Add a") and norm.tool_commits[1].endswith("Add b")
    assert _show(repo, "rev-list", "--count", f"{base}..{norm.patch}") == "1"
    assert _show(repo, "rev-parse", f"{norm.patch}^") == base
    assert sorted(_show(repo, "diff", "--name-only", base, norm.patch).split()) == [
        "a.txt", "b.txt", "c.txt"]
    body = _show(repo, "log", "-1", "--format=%B", norm.patch)
    assert "Squashed 2 commits made by the tool:" in body
    assert "* Add a (Test Author <author@example.com>)" in body and "  Because a." in body
    trailers = subprocess.run(["git", "interpret-trailers", "--parse"], input=body, text=True,
                              capture_output=True).stdout
    assert "Signed-off-by" not in trailers and "Uet-Workstream: ws-x" in trailers


def test_head_moved_off_the_base_is_noted_and_content_taken_against_base(env) -> None:
    repo, wt, base, tmp, *_ = env
    _tool(wt, tmp, """
        git checkout -q --orphan elsewhere && git rm -rq --cached . && git clean -fdq
        echo only > only.txt && git add only.txt && git commit -qm 'unrelated root'
    """)
    norm = _norm(repo, wt, base)
    assert norm.patch and norm.error is None and norm.notes
    assert "does not descend from the base" in _show(repo, "log", "-1", "--format=%B",
                                                       norm.patch)
    assert _show(repo, "rev-parse", f"{norm.patch}^") == base
    assert _show(repo, "ls-tree", "--name-only", "-r", norm.patch) == "only.txt"
    assert sum(c.status == "D" for c in norm.changes) == 6


def test_no_change_is_none(env) -> None:
    repo, wt, base, tmp, *_ = env
    _tool(wt, tmp, "echo x > edit.txt; git checkout -- edit.txt; echo log > run.log")
    norm = _norm(repo, wt, base)
    assert norm.patch is None and norm.error is None and norm.changes == []
    # Commits that cancel out are no change either.
    _tool(wt, tmp, "echo a > a.txt && git add a.txt && git commit -qm add && git rm -q a.txt "
                   "&& git commit -qm remove")
    norm = _norm(repo, wt, base)
    assert norm.patch is None and len(norm.tool_commits) == 2


def test_dot_git_writes_are_never_taken(env) -> None:
    repo, wt, base, tmp, *_ = env
    _tool(wt, tmp, """
        echo evil > "$(git rev-parse --git-dir)/evil"
        rm .git && mkdir .git && echo evil > .git/config
        mkdir -p sub/.git && echo evil > sub/.git/HEAD
        echo real > real.txt
    """)
    norm = _norm(repo, wt, base)
    assert norm.patch
    names = _show(repo, "ls-tree", "-r", "--name-only", norm.patch).splitlines()
    assert "real.txt" in names and not any(".git/" in n or n == ".git" for n in names)


def test_diff_on_stdout(env) -> None:
    repo, wt, base, tmp, *_ = env
    out = _tool(wt, tmp, """
        echo 'Here is my change:'
        printf 'one\\nTWO\\n' > edit.txt && rm gone.txt && printf '\\001\\002' > new.bin
        git add -A && git diff --cached --binary
        git reset -q --hard && echo stray > stray.txt
    """)
    norm = _norm(repo, wt, base, "diff", out)
    assert norm.error is None and norm.patch
    assert sorted(_show(repo, "diff", "--name-status", base, norm.patch).splitlines()) == [
        "A\tnew.bin", "D\tgone.txt", "M\tedit.txt"]
    assert _show(repo, "show", f"{norm.patch}:edit.txt") == "one\nTWO"


def test_diff_in_a_file_named_on_stdout(env) -> None:
    repo, wt, base, tmp, *_ = env
    out = _tool(wt, tmp, """
        echo changed > keep.txt && git diff > my.patch && git checkout -- keep.txt
        echo my.patch
    """)
    norm = _norm(repo, wt, base, "diff", out)
    assert norm.error is None and norm.patch and "my.patch" in norm.notes[0]
    assert _show(repo, "diff", "--name-only", base, norm.patch) == "keep.txt"


def test_mbox_on_stdout(env) -> None:
    repo, wt, base, tmp, *_ = env
    out = _tool(wt, tmp, """
        echo a > a.txt && git add a.txt && git commit -qm 'First mail' -m 'Body one.'
        chmod +x script.sh && git commit -qam 'Second mail'
        git format-patch --stdout HEAD~2
    """)
    norm = _norm(repo, wt, base, "mbox", out)
    assert norm.error is None and norm.patch
    assert norm.tool_commits == ["First mail", "Second mail"]
    assert _show(repo, "rev-parse", f"{norm.patch}^") == base
    body = _show(repo, "log", "-1", "--format=%an|%B", norm.patch)
    assert body.startswith("Test Author|Make the change")
    assert "* First mail" in body and "  Body one." in body
    assert sorted(_show(repo, "diff", "--name-status", base, norm.patch).splitlines()) == [
        "A\ta.txt", "M\tscript.sh"]


def test_unappliable_patch_is_an_error(env) -> None:
    repo, wt, base, _tmp, *_ = env
    bad = b"--- a/edit.txt\n+++ b/edit.txt\n@@ -1,2 +1,2 @@\n-nope\n-never\n+x\n+y\n"
    norm = _norm(repo, wt, base, "diff", bad)
    assert norm.patch is None and norm.error and "does not apply" in norm.error
    assert _norm(repo, wt, base, "mbox", b"From x\n\nnot a patch\n").patch is None
    assert _norm(repo, wt, base, "diff", b"").patch is None


def test_reused_worktree_starts_clean_after_a_messy_tool(env) -> None:
    repo, wt, base, tmp, pool, handle = env
    _tool(wt, tmp, "echo a > a.txt && git add a.txt && git commit -qm x && echo u > u.txt "
                   "&& echo l > x.log && git checkout -q -b tool-branch && echo s > s.txt "
                   "&& git add s.txt")
    norm = _norm(repo, wt, base)
    assert norm.patch
    pool.release(handle)
    again = pool.acquire(base)
    assert again.path == wt
    assert git(wt, "status", "--porcelain", "--ignored", "--untracked-files=all") == ""
    assert git(wt, "rev-parse", "HEAD") == base
    assert not (wt / "a.txt").exists() and not (wt / "x.log").exists()
    # The patch commit outlives the reset (the engine refs it before releasing).
    assert _show(repo, "cat-file", "-t", norm.patch) == "commit"


def test_a_tool_that_removes_its_worktree(env) -> None:
    repo, wt, base, tmp, pool, handle = env
    _tool(wt, tmp, 'cd .. && rm -rf "$OLDPWD"')
    assert not wt.exists()
    norm = _norm(repo, wt, base)
    assert norm.patch is None and norm.error == "the tool removed its worktree"
    assert _norm(repo, wt, base, "diff", b"x").error is not None
    pool.release(handle)
    again = pool.acquire(base)  # the slot is rebuilt
    assert again.path == wt and git(wt, "status", "--porcelain") == ""
