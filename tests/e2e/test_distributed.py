"""The Dask executor end to end: ``uet run --executor dask://...`` on a real
``LocalCluster(processes=True)`` bound to 127.0.0.1 (one per test process, shared with the other
distributed test modules: ``tests/e2e/daskkit.py``), workers reaching the repository through a
bare remote over ``file://`` or through ``uet serve``. A distributed run lands what a local run
lands; a worker SIGKILLed mid-tool and a coordinator SIGKILLed mid-run are recovered from; both
sides pass ``git fsck --strict`` and ``uet fsck``."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess as sp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fsck_quick, git, start_forked, wait_forked
from tests.e2e.daskkit import (
    address,
    alive,
    needs_distributed,
    run_killing_the_worker,
    shared_cluster,
    wait_for,
    with_workers,
    worker_cache,
)
from tests.e2e.helpers import (
    NO_SANDBOX,
    fsck_clean,
    landed_workstreams,
    last_run,
    run,
    run_ok,
    setup_repo,
    states,
)
from tests.e2e.started import start_uet
from uet_git.engine.remotejob import OWNER_VAR, owner_marker, stale_tools, sweep_stale_tools

pytestmark = needs_distributed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return shared_cluster(tmp_path_factory)


CONFIG = '[run]\npredicted_conflicts = "ignore"\n'
WORKSTREAMS: dict[str, dict[str, Any]] = {
    "a": {"command": "echo A > a.txt", "scope": {"allow": ["a.txt"]}},
    "b": {"depends_on": ["a"], "command": "cat a.txt > b.txt; echo B >> b.txt",
          "acceptance": ["grep -q A b.txt"]},
    "q": {"command": "echo Q > q.txt", "acceptance": ["false"]},  # quarantined
    "c1": {"command": "echo one > shared.txt"},
    "c2": {"command": "echo two > shared.txt"},  # conflicts with c1's, integrated after it
}


def _bare_remote(repo: Path, where: Path) -> str:
    git(repo.parent, "clone", "-q", "--bare", str(repo), str(where))
    return where.as_uri()


def _fsck_remote(remote: Path) -> None:
    proc = sp.run(["git", *fsck_quick(remote), "fsck", "--strict", "--no-progress"], cwd=remote,
                  capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    u = run(remote, "fsck")
    assert u.returncode == 0, f"uet fsck on the remote: {u.stdout}{u.stderr}"


def test_a_distributed_run_lands_what_a_local_run_lands(cluster: Any, tmp_path: Path) -> None:
    """Over a bare remote (file://) and over ``uet serve``: the same states and final tree as
    a local ``--deterministic`` run; both sides, the workers' mirrors included, fsck clean."""
    origin = setup_repo(tmp_path / "origin", workstreams=WORKSTREAMS, config=CONFIG)
    local, dist, served = tmp_path / "local", tmp_path / "dist", tmp_path / "served"
    for clone in (local, dist, served):
        git(tmp_path, "clone", "-q", str(origin), str(clone))
    remote_dir = tmp_path / "remote.git"
    url = _bare_remote(dist, remote_dir)

    run_ok(local, "run", "--deterministic", "-j", "2", code=1)
    out = run_ok(dist, "run", "--deterministic", "-j", "2", "--executor", address(cluster),
                 "--remote", url, code=1)
    assert "executor: Dask scheduler" in out.stdout
    said = {dist: out.stdout}
    out = run_ok(served, "run", "--deterministic", "-j", "2", "--executor", address(cluster),
                 "--serve", "127.0.0.1:0", code=1)
    assert "workers fetch from and push to http://127.0.0.1:" in out.stdout
    said[served] = out.stdout

    want = {"a": "committed", "b": "committed", "c1": "committed", "q": "quarantined",
            "c2": "quarantined"}
    assert states(local) == want
    for repo in (dist, served):
        assert states(repo) == want, said[repo]
        assert git(repo, "rev-parse", "main^{tree}") == git(local, "rev-parse", "main^{tree}")
    fsck_clean(served)
    assert git(served, "for-each-ref", "refs/uet/inbox/") == ""
    mirrors = sorted((worker_cache() / "mirrors").glob("*.git"))
    assert mirrors
    for mirror in mirrors:
        proc = sp.run(["git", *fsck_quick(mirror), "fsck", "--strict", "--no-progress",
                       "--no-dangling"],
                      cwd=mirror, capture_output=True, text=True)
        assert proc.returncode == 0, f"{mirror}: {proc.stdout}{proc.stderr}"
    run_id = last_run(dist)
    reasons = {ws: git(dist, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
                       "--grep", f"^{ws}: .* -> quarantined", f"refs/uet/ledger/{run_id}")
               for ws in ("q", "c2")}
    assert reasons == {"q": "verify-failed", "c2": "conflict"}
    # The ledger says where each attempt ran: every worker transition names host and worker.
    created = git(dist, "log", "--format=%(trailers:key=Uet-Worker,valueonly,separator=)",
                  "--grep", "-> created", f"refs/uet/ledger/{run_id}").split()
    assert len(created) == 5 and all(w.startswith("tcp://127.0.0.1:") for w in created)
    # The inbox refs of recorded attempts are pruned on both sides.
    assert git(dist, "for-each-ref", "refs/uet/inbox/") == ""
    assert git(remote_dir, "for-each-ref", "refs/uet/inbox/", "refs/uet-base/") == ""

    run_ok(dist, "push", url, run_id)
    fsck_clean(dist)
    _fsck_remote(remote_dir)


def test_the_coordinator_killed_then_resume(cluster: Any, tmp_path: Path) -> None:
    """The killed coordinator's job still pushes its inbox ref; the resume records that patch
    (the tool does not run again) and lands each workstream once."""
    shared = tmp_path / "shared"
    shared.mkdir()
    count = shared / "count"
    tool = f"echo run >> {count}; touch {shared}/started; sleep 1; echo A > a.txt"
    repo = setup_repo(tmp_path / "repo", config=NO_SANDBOX, workstreams={
        "a": {"command": tool},
        "b": {"depends_on": ["a"], "command": "cat a.txt > b.txt"},
    })
    remote_dir = tmp_path / "remote.git"
    url = _bare_remote(repo, remote_dir)
    with start_uet(repo, "run", "--executor", address(cluster), "--remote", url,
                   new_session=True) as coordinator:
        wait_for(lambda: (shared / "started").exists(), 20, "the tool to start")
        os.killpg(coordinator.pid, signal.SIGKILL)
        assert coordinator.wait(10) == -signal.SIGKILL
    run_id = last_run(repo)
    inbox = f"refs/uet/inbox/{run_id}/a/1"
    wait_for(lambda: git(remote_dir, "for-each-ref", inbox) != "", 20,
              "the orphaned job's inbox ref")

    proc = run_ok(repo, "resume", run_id)
    assert states(repo) == {"a": "committed", "b": "committed"}
    assert count.read_text().splitlines() == ["run"], "the tool ran again"
    assert landed_workstreams(repo) == ["a", "b"]
    assert "an earlier run of this job pushed it" in git(
        repo, "log", "--format=%B", "--grep", "a: none -> created", f"refs/uet/ledger/{run_id}")
    assert git(remote_dir, "for-each-ref", "refs/uet/inbox/") == "", proc.stdout
    run_ok(repo, "push", url, run_id)
    fsck_clean(repo)
    _fsck_remote(remote_dir)


def test_an_attempt_has_one_patch_whoever_pushed_first(cluster: Any, tmp_path: Path) -> None:
    """Two jobs of one attempt (a worker cut off, not dead, and its job run again): the inbox
    push is create-only, and the job that finds the ref taken records THAT patch."""
    remote_dir = tmp_path / "remote.git"
    # The tool plays the other job: it pushes a patch of the same attempt first.
    first = (
        'set -e; export GIT_INDEX_FILE="$PWD/../first-index-$$"; git read-tree HEAD; '
        'blob=$(echo theirs | git hash-object -w --stdin); '
        'git update-index --add --cacheinfo 100644,$blob,t.txt; '
        "c=$(printf 't\\n\\nUet-Run: %s\\nUet-Workstream: t\\nUet-Attempt: 1\\n' "
        '"$UET_RUN" | git commit-tree $(git write-tree) -p HEAD); '
        f'git push -q {remote_dir.as_uri()} $c:refs/uet/inbox/$UET_RUN/t/1; '
        'rm -f "$GIT_INDEX_FILE"; unset GIT_INDEX_FILE; echo mine > t.txt')
    repo = setup_repo(tmp_path / "repo", config=NO_SANDBOX,
                      workstreams={"t": {"command": first}})
    url = _bare_remote(repo, remote_dir)
    run_ok(repo, "run", "--executor", address(cluster), "--remote", url)
    assert git(repo, "show", "main:t.txt") == "theirs"
    run_id = last_run(repo)
    assert "an earlier run of this job pushed it" in git(
        repo, "log", "--format=%B", "--grep", "t: none -> created", f"refs/uet/ledger/{run_id}")
    run_ok(repo, "push", url, run_id)
    fsck_clean(repo)
    _fsck_remote(remote_dir)


def test_ctrl_c_reaches_the_tool_on_the_worker(cluster: Any, tmp_path: Path) -> None:
    """Dask's cancel does not stop a running task: the coordinator's cancel travels through a
    distributed.Event the job polls, and the tool's process group is ended there."""
    shared = tmp_path / "shared"
    shared.mkdir()
    repo = setup_repo(tmp_path / "repo", config=NO_SANDBOX, workstreams={
        "s": {"command": f"echo $$ > {shared}/pid; cd / && sleep 60"}})
    with start_uet(repo, "run", "--executor", address(cluster),
                   new_session=True) as coordinator:
        pid_file = shared / "pid"
        wait_for(lambda: pid_file.is_file() and pid_file.read_text().strip(), 20, "the tool")
        tool = int(pid_file.read_text())
        os.kill(coordinator.pid, signal.SIGINT)
        code = coordinator.wait(20)
        out = coordinator.output()
    assert code == 130, out
    wait_for(lambda: not alive(tool), 10, "the tool to stop")
    assert states(repo) == {}  # nothing recorded for the cancelled attempt: resume runs it


def test_a_tool_times_out_on_the_worker(cluster: Any, tmp_path: Path) -> None:
    """The worker's own process rules end a slow tool, as locally: ``tool-timeout``, the tool
    and what it started gone, the run not held up."""
    shared = tmp_path / "shared"
    shared.mkdir()
    repo = setup_repo(tmp_path / "repo", config=NO_SANDBOX, workstreams={
        "s": {"command": f"echo $$ > {shared}/pid; sleep 120", "timeout": 0.5}})
    started = time.monotonic()
    run_ok(repo, "run", "--executor", address(cluster), code=1)
    assert time.monotonic() - started < 60
    assert states(repo) == {"s": "quarantined"}
    reason = git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
                 f"refs/uet/ledger/{last_run(repo)}", "--grep", "-> quarantined")
    assert reason == "tool-timeout"
    wait_for(lambda: not alive(int((shared / "pid").read_text())), 5, "the tool to end")


def test_the_sweep_kills_only_tools_whose_worker_is_gone(tmp_path: Path) -> None:
    env = {**os.environ}
    orphan = sp.Popen(["sleep", "30"], env={**env, OWNER_VAR: "999999999:1"})
    mine = sp.Popen(["sleep", "30"], env={**env, OWNER_VAR: owner_marker()})
    try:
        wait_for(lambda: alive(orphan.pid) and alive(mine.pid), 5, "the processes")
        assert orphan.pid in stale_tools() and mine.pid not in stale_tools()
        # Any Dask worker starting on this machine sweeps too (another test's cluster): the
        # orphan may be gone before this sweep looks, never the live owner's tool. Tests
        # running beside this one may leave orphans of their own (a killed worker's tool):
        # this sweep may take those too.
        assert mine.pid not in set(sweep_stale_tools(grace=0.5))
        assert orphan.wait(5) is not None and mine.poll() is None
    finally:
        for p in (orphan, mine):
            p.kill()
            p.wait()


def test_plain_tcp_off_loopback_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "repo", workstreams={"a": WORKSTREAMS["a"]})
    proc = run(repo, "run", "--executor", "dask://192.0.2.7:8786", "--remote", "file:///x")
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "plain TCP off loopback" in err, err
    proc = run(repo, "run", "--executor", "tls://192.0.2.7:8786", "--remote", "file:///x")
    assert proc.returncode != 0 and "tls_ca, tls_cert and tls_key" in proc.stderr
    assert not git(repo, "for-each-ref", "refs/uet/ledger/")  # refused before recording


def _import_uet_afresh() -> int:
    """In a forked child: uet's modules and Dask's forgotten, uet's imported again as a new
    interpreter imports them (every module of its own runs again; the third-party ones it
    shares with this process stay loaded, and none of those imports Dask), ``uet --help``;
    exit 0 when neither distributed nor dask was imported, else 1 naming what was."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("uet_git", "distributed", "dask")]:
        del sys.modules[name]
    importlib.import_module("uet_git.cli")
    importlib.import_module("uet_git.commands.run")
    importlib.import_module("uet_git.engine.executor")
    with contextlib.suppress(SystemExit):
        importlib.import_module("uet_git.cli").main(["--help"])
    found = sorted(m for m in sys.modules if m in ("distributed", "dask"))
    print(f"imported: {found}", file=sys.stderr)
    return 1 if found else 0


def test_local_runs_and_help_never_import_distributed(tmp_path: Path) -> None:
    # A child forked from this process (which imported distributed for the cluster), not a
    # new interpreter starting Python and the third-party modules again.
    with tempfile.TemporaryFile() as err:
        pid = start_forked(_import_uet_afresh, stderr=err.fileno())
        code = wait_forked(pid, 60)
        err.seek(0)
        said = err.read().decode(errors="replace")
    assert code == 0, said


def test_a_worker_killed_mid_tool(cluster: Any, tmp_path: Path) -> None:
    """The job runs again on a live worker; the dead worker's tool is killed when its
    replacement starts (the sweep plugin), not left sleeping."""
    shared = tmp_path / "shared"
    shared.mkdir()
    slow = (f"if [ -e {shared}/first ]; then :; else touch {shared}/first; "
            # out of the worktree: only the sweep can find it, not the pool's quiesce
            f"echo $$ > {shared}/pid; cd / && sleep 60; fi; echo S > s.txt")
    repo = setup_repo(tmp_path / "repo", workstreams={"s": {"command": slow}},
                      config=NO_SANDBOX)
    with_workers(cluster)  # one to kill, one to run the job again
    proc = run_killing_the_worker(repo, cluster, shared / "pid", "tool", 20)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert states(repo) == {"s": "committed"}
    assert landed_workstreams(repo) == ["s"]
    fsck_clean(repo)
