"""Candidate checks on Dask workers, the remote steps' timings in the ledger, ``uet show`` and
``uet report``, and the version check between a coordinator and its workers. On the shared
``LocalCluster(processes=True)`` of ``tests/e2e/daskkit.py`` (127.0.0.1)."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess as sp
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fsck_quick, git
from tests.e2e.daskkit import (
    address,
    alive,
    client_of,
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
from uet_git import __version__
from uet_git.cli.reportdata import gather
from uet_git.engine.executor import DaskExecutor, Transport
from uet_git.engine.remotejob import (
    PROTOCOL,
    JobSpec,
    VersionMismatch,
    run_job,
    version_problem,
    worker_version,
)
from uet_git.engine.remotesteps import REMOTE_STEPS, parse_steps
from uet_git.engine.remoteverify import VerifySpec, run_verify_job
from uet_git.errors import UetError
from uet_git.gitrepo.repo import Repo
from uet_git.spec.models import ExecutorConfig

pytestmark = needs_distributed


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return shared_cluster(tmp_path_factory)


def _ledger(repo: Path, fmt: str, grep: str) -> list[str]:
    out = git(repo, "log", f"--format={fmt}", "--grep", grep, f"refs/uet/ledger/{last_run(repo)}")
    return [line for line in out.splitlines() if line.strip()]


def _config(shared: Path) -> str:
    # The hook notes where it ran (outside the sandbox: mode none) and refuses "forbidden".
    hook = f"pwd >> {shared}/where; ! grep -rq forbidden --include=*.txt ."
    return f'{NO_SANDBOX}[run]\npredicted_conflicts = "ignore"\n[hooks]\npre-merge = ["{hook}"]\n'


WORKSTREAMS: dict[str, dict[str, Any]] = {
    "a": {"command": "echo a > a.txt", "acceptance": ["test -f a.txt"]},
    "b": {"command": "echo b > b.txt", "acceptance": ["test -f b.txt"]},
    "evil": {"command": "echo forbidden > evil.txt"},
}


def _remote(repo: Path, where: Path) -> str:
    git(repo.parent, "clone", "-q", "--bare", str(repo), str(where))
    return where.as_uri()


def test_candidates_are_judged_on_the_workers(cluster: Any, tmp_path: Path) -> None:
    """The queue's candidate checks (acceptance again on a changed tree, the pre-merge hooks)
    run in a worker machine's worktree, fetched from a bare remote the coordinator published
    them to; the verdicts are recorded here with where they ran; nothing is left on the
    remote, and both sides pass the fsck checks."""
    shared = tmp_path / "shared"
    shared.mkdir()
    repo = setup_repo(tmp_path / "repo", workstreams=WORKSTREAMS, config=_config(shared))
    remote_dir = tmp_path / "remote.git"
    url = _remote(repo, remote_dir)
    run_ok(repo, "run", "-j", "2", "--executor", address(cluster), "--remote", url, code=1)

    assert states(repo) == {"a": "committed", "b": "committed", "evil": "quarantined"}
    assert sorted(landed_workstreams(repo)) == ["a", "b"]
    where = (shared / "where").read_text().splitlines()
    assert len(where) >= 3  # one candidate each at least
    cache = str(worker_cache().resolve())
    assert all(Path(w).resolve().is_relative_to(cache) for w in where), where
    # Where each verdict was reached: the verified transitions name the Dask worker; the
    # quarantine says it in its detail and its evidence.
    workers = _ledger(repo, "%(trailers:key=Uet-Worker,valueonly,separator=)", "-> verified")
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    evil = _ledger(repo, "%B", "^evil: .* -> quarantined")
    assert "Uet-Reason: hook-failed" in "\n".join(evil)
    assert any("checked on" in line for line in evil), evil
    shown = run_ok(repo, "show", "evil", "--evidence", "remote.txt").stdout
    assert shown.startswith("checked on ") and "tcp://127.0.0.1:" in shown
    # The published candidates are gone from the remote with the run's other deliveries.
    assert git(remote_dir, "for-each-ref", "refs/uet-candidates/", "refs/uet-base/",
               "refs/uet/inbox/") == ""
    run_ok(repo, "push", url, last_run(repo))
    fsck_clean(repo)
    proc = sp.run(["git", *fsck_quick(remote_dir), "fsck", "--strict", "--no-progress"],
                  cwd=remote_dir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run(remote_dir, "fsck").returncode == 0


def test_the_integrator_judges_on_the_workers_over_uet_serve(cluster: Any,
                                                             tmp_path: Path) -> None:
    """``[verify] window = 1`` (the one-at-a-time integrator) goes through the same remote
    bench; over ``uet serve`` the workers fetch the candidate by id with the run's token. The
    scheduler and ``uet serve`` are those of ``[executor]`` in uet.toml (no command-line
    option): nothing of the run is left in the inbox."""
    shared = tmp_path / "shared"
    shared.mkdir()
    executor = f'[executor]\naddress = "{address(cluster)}"\nserve = "127.0.0.1:0"\n'
    config = _config(shared) + "[verify]\nwindow = 1\n" + executor
    repo = setup_repo(tmp_path / "repo", config=config, workstreams={
        "a": WORKSTREAMS["a"], "evil": WORKSTREAMS["evil"]})
    out = run_ok(repo, "run", code=1)
    assert "workers fetch from and push to http://127.0.0.1:" in out.stdout
    assert states(repo) == {"a": "committed", "evil": "quarantined"}
    assert landed_workstreams(repo) == ["a"]
    assert git(repo, "for-each-ref", "refs/uet/inbox/") == ""
    cache = str(worker_cache().resolve())
    where = (shared / "where").read_text().splitlines()
    assert len(where) == 2 and all(Path(w).resolve().is_relative_to(cache) for w in where)
    assert _ledger(repo, "%(trailers:key=Uet-Worker,valueonly,separator=)", "-> verified")
    fsck_clean(repo)


def test_the_coordinator_killed_mid_candidate_check_then_resume(cluster: Any,
                                                                tmp_path: Path) -> None:
    """Killed while a worker judges a candidate it published to a bare remote: the resume
    judges the candidate again, commits and lands it once, and prunes what the killed run
    left on the remote (the published candidate, the base, the inbox ref)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    hook = (f"echo run >> {shared}/count; [ -e {shared}/started ] || "
            f"{{ touch {shared}/started; sleep 3; }}")
    repo = setup_repo(tmp_path / "repo", workstreams={"a": WORKSTREAMS["a"]},
                      config=f'{NO_SANDBOX}[hooks]\npre-merge = ["{hook}"]\n')
    remote_dir = tmp_path / "remote.git"
    url = _remote(repo, remote_dir)
    with start_uet(repo, "run", "--executor", address(cluster), "--remote", url,
                   new_session=True) as coordinator:
        wait_for(lambda: (shared / "started").exists(), 30, "the hook to start")
        os.killpg(coordinator.pid, signal.SIGKILL)
        assert coordinator.wait(10) == -signal.SIGKILL
    run_id = last_run(repo)
    assert git(remote_dir, "for-each-ref", "--format=%(refname)", "refs/uet-candidates/")
    assert git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/queued/{run_id}/") \
        == f"refs/uet/queued/{run_id}/a"

    run_ok(repo, "resume", run_id)
    assert states(repo) == {"a": "committed"}
    assert landed_workstreams(repo) == ["a"]
    assert (shared / "count").read_text().splitlines() == ["run", "run"]
    assert _ledger(repo, "%(trailers:key=Uet-Worker,valueonly,separator=)", "-> verified")
    assert git(remote_dir, "for-each-ref", "refs/uet-candidates/", "refs/uet-base/",
               "refs/uet/inbox/") == ""
    fsck_clean(repo)


def test_the_remote_steps_are_in_show_and_report(cluster: Any, tmp_path: Path) -> None:
    """A worker's steps (tool, acceptance) reach the ledger with the attempt's last worker
    transition; ``uet show`` says them in its history, ``uet report`` draws them."""
    repo = setup_repo(tmp_path / "repo", config=NO_SANDBOX, workstreams={
        "s": {"command": "sleep 0.2; echo s > s.txt", "acceptance": ["test -f s.txt"]}})
    before = set((worker_cache() / "mirrors").glob("*.git"))
    run_ok(repo, "run", "--executor", address(cluster))
    raw = _ledger(repo, f"%(trailers:key={REMOTE_STEPS},valueonly,separator=)", "-> queued")
    assert len(raw) == 1
    parsed = parse_steps(raw[0])
    assert parsed is not None
    _, _, steps = parsed
    names = [s["step"] for s in steps]
    assert names == ["tool", "acceptance"] and all(s["ok"] for s in steps)
    tool = steps[0]
    assert 0.2 <= tool["end"] - tool["start"] < 30
    history = run_ok(repo, "show", "s").stdout
    assert "tool 0." in history or "tool 1." in history, history
    assert "on " in history and "(tcp://127.0.0.1:" in history
    report = gather(Repo.open(repo), last_run(repo))
    drawn = [s for s in report.steps if s["ws"] == "s" and s["step"] in ("tool", "acceptance")]
    assert [s["step"] for s in drawn] == ["tool", "acceptance"], report.steps
    assert report.timed and all("(remote)" in s["detail"] for s in drawn)
    out = run_ok(repo, "report", "-o", str(tmp_path / "r.html")).stdout
    assert "wrote" in out and "bar-tool" in (tmp_path / "r.html").read_text()
    # The machine's mirror of this repository is made once, then only fetched into.
    made = set((worker_cache() / "mirrors").glob("*.git")) - before
    assert len(made) == 1
    mirror = made.pop()
    (mirror / "kept").write_text("a re-clone would lose this\n")
    git(repo, "commit", "-q", "--allow-empty", "-m", "a new base")
    (repo / "workstreams" / "t.yaml").write_text("id: t\ncommand: echo t > t.txt\n")
    run_ok(repo, "run", "--executor", address(cluster), "--only", "t")
    assert (mirror / "kept").is_file()
    assert set((worker_cache() / "mirrors").glob("*.git")) - before == {mirror}
    assert git(mirror, "cat-file", "-t", git(repo, "rev-parse", "HEAD~1")) == "commit"


def test_a_discarded_speculative_candidate_stops_on_its_worker(cluster: Any,
                                                               tmp_path: Path) -> None:
    """a's candidate fails its hook while b's speculative candidate (a + b) is judged on the
    other worker: that judging is stopped there (its hook ends at once, not after its 60 s),
    a is quarantined after its flake check, and b commits on its own."""
    shared = tmp_path / "shared"
    shared.mkdir()
    hook = (f"if [ -f a.txt ] && [ -f b.txt ]; then echo $$ > {shared}/spec; sleep 60; "
            f"exit 0; fi; if [ -f a.txt ]; then [ -e {shared}/a1 ] || "
            f"{{ touch {shared}/a1; sleep 4; }}; exit 1; fi")
    repo = setup_repo(tmp_path / "repo", config=f'{NO_SANDBOX}[hooks]\npre-merge = ["{hook}"]\n',
                      workstreams={"a": {"command": "echo a > a.txt"},
                                   "b": {"command": "sleep 1; echo b > b.txt"}})
    with_workers(cluster)  # a judging each: a's candidate and the speculative one behind it
    started = time.monotonic()
    proc = run(repo, "run", "-j", "2", "--executor", address(cluster))
    took = time.monotonic() - started
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert states(repo) == {"a": "quarantined", "b": "committed"}, proc.stdout
    assert took < 45, f"the speculative judging ran its hook out ({took:.0f} s)"
    spec = int((shared / "spec").read_text())
    wait_for(lambda: not alive(spec), 10, "the discarded candidate's hook to stop")
    assert "Uet-Reason: hook-failed" in "\n".join(_ledger(repo, "%B", "^a: .* -> quarantined"))


def _spec(repo: Path) -> JobSpec:
    head = git(repo, "rev-parse", "HEAD")
    return JobSpec(run="20261201-000000-abcd", ws={"id": "a", "command": "true"}, config={},
                   base=head, attempt=1, url=repo.as_uri(), repo_key="k",
                   cache=str(repo.parent / "cache"))


def test_a_worker_of_another_version_fails_the_job_in_one_line(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "repo")
    spec = _spec(repo)
    for changed, said in ((dict(uet_version="0.0.1"), "uet 0.0.1 (job protocol"),
                          (dict(protocol=PROTOCOL + 1), f"(job protocol {PROTOCOL + 1})")):
        with pytest.raises(VersionMismatch) as err:
            run_job(dataclasses.replace(spec, **changed))
        msg = str(err.value)
        assert len(msg.splitlines()) == 1 and said in msg
        assert f"worker runs uet {__version__} (job protocol {PROTOCOL})" in msg
    verify = VerifySpec(run=spec.run, ws=spec.ws, config={}, base=spec.base, attempt=1,
                        patch=spec.base, candidate=spec.base, tip=spec.base,
                        verified=spec.base, url=spec.url, repo_key="k", cache=spec.cache,
                        uet_version="9.9")
    with pytest.raises(VersionMismatch, match=r"the coordinator uet 9\.9"):
        run_verify_job(verify)
    assert not (tmp_path / "cache").exists()


def test_the_workers_versions_are_asked_at_connect(cluster: Any) -> None:
    """Before the first job the coordinator asks every connected worker; one of another
    version refuses the run in one line (the jobs check again: workers may join later)."""
    client = client_of(cluster)
    try:
        versions = client.run(worker_version)
    finally:
        client.close()
    assert versions and version_problem(versions) is None
    addr = sorted(versions)[0]
    msg = version_problem({**versions, addr: ("0.0.1", PROTOCOL)})
    assert msg == (f"the Dask worker {addr} runs uet 0.0.1 (job protocol {PROTOCOL}), the "
                   f"coordinator uet {__version__} (job protocol {PROTOCOL}): install the same "
                   "uet on the coordinator and every worker")
    assert "job protocol 99" in str(version_problem({addr: (__version__, 99)}))


def test_the_version_check_through_the_cluster(cluster: Any, tmp_path: Path) -> None:
    """The worker refuses the altered spec before it fetches anything; the coordinator turns
    that into one line naming the workstream and both versions."""
    repo = setup_repo(tmp_path / "repo")
    client = client_of(cluster)
    try:
        ex = DaskExecutor(client, Transport(repo.as_uri(), here=True), "r",
                          ExecutorConfig(address=address(cluster)), "k")
        spec = dataclasses.replace(_spec(repo), uet_version="0.0.1")
        with pytest.raises(UetError) as err:
            ex._wait(run_job, spec, "uet-cancel-version-test", cancel=None, budget=60,
                     what="a")
    finally:
        client.close()
    msg = str(err.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("a: the Dask worker runs uet ") and "the coordinator uet 0.0.1" in msg


def test_a_job_over_its_budget_is_stopped_and_fails_in_one_line(cluster: Any,
                                                                 tmp_path: Path) -> None:
    """The coordinator's own deadline (all the attempt's timeouts and a margin) reaches the tool
    through the job's event, and the attempt fails instead of coming back as cancelled (which a
    resume would only run again). Cut to 2 s here: long enough for the tool to start on a loaded
    machine."""
    repo = setup_repo(tmp_path / "repo")
    pid = tmp_path / "pid"
    spec = dataclasses.replace(_spec(repo), ws={"id": "a", "command": f"echo $$ > {pid}; "
                                                                      "cd / && sleep 30"},
                               config={"sandbox": {"mode": "none"}},
                               cancel_event="uet-cancel-budget-test", cache=None)
    client = client_of(cluster)
    started = time.monotonic()
    try:
        ex = DaskExecutor(client, Transport(repo.as_uri(), here=True), spec.run,
                          ExecutorConfig(address=address(cluster)), "k")
        with pytest.raises(UetError) as err:
            ex._wait(run_job, spec, "uet-cancel-budget-test", cancel=None, budget=2,
                     what="a")
    finally:
        client.close()
    assert str(err.value) == "a: the Dask job ran over its 2 s and was stopped"
    assert time.monotonic() - started < 25
    wait_for(lambda: pid.is_file() and pid.read_text().strip(), 5, "the tool's pid")
    wait_for(lambda: not alive(int(pid.read_text())), 10, "the tool to be stopped")


def test_a_worker_killed_mid_candidate_check(cluster: Any, tmp_path: Path) -> None:
    """The verification job runs again on a live worker and the candidate commits; the dead
    worker's hook (marked like its tools) is swept when its replacement starts."""
    shared = tmp_path / "shared"
    shared.mkdir()
    hook = (f"if [ -e {shared}/first ]; then :; else touch {shared}/first; "
            f"echo $$ > {shared}/pid; cd / && sleep 60; fi")
    repo = setup_repo(tmp_path / "repo", workstreams={"s": {"command": "echo s > s.txt"}},
                      config=f'{NO_SANDBOX}[hooks]\npre-merge = ["{hook}"]\n')
    with_workers(cluster)  # one to kill, one to judge again
    proc = run_killing_the_worker(repo, cluster, shared / "pid", "hook", 30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert states(repo) == {"s": "committed"}
    assert _ledger(repo, "%(trailers:key=Uet-Worker,valueonly,separator=)", "-> verified")
    fsck_clean(repo)
