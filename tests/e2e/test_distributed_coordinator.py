"""The coordinator's side of a Dask job, without a cluster: what a worker reports is recorded
through the run's own ledger calls, with where it ran, and what judges the patch is judged
again here (a worker's word that a patch is valid is not enough)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.engine.verifykit import kit
from uet_git.engine.executor import HOST_TRAILER, WORKER_TRAILER, DaskExecutor, Transport
from uet_git.engine.remotejob import JobResult
from uet_git.errors import UetError
from uet_git.gitrepo.odb import get_commit
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger.layout import inbox_ref
from uet_git.spec.models import ExecutorConfig


def _executor(repo_dir: Path, run: str) -> DaskExecutor:
    # No client is needed to record a job's result: only submitting one needs the cluster.
    return DaskExecutor(None, Transport(repo_dir.as_uri(), here=True), run,
                        ExecutorConfig(address="dask://127.0.0.1:8786"), "key")


def _pushed(k: Any, ws: str, patch: str) -> None:
    """What the worker's push leaves in the repository: the attempt's inbox ref."""
    git(k.path, "update-ref", inbox_ref(k.ledger.run, ws, 1), patch)


def _result(patch: str, *records: dict[str, Any], state: str = "queued") -> JobResult:
    return JobResult(list(records), state, None, False, 0.5, "success", patch, "host-b",
                     "tcp://10.0.0.2:40000")


def _rec(to: str, **kw: Any) -> dict[str, Any]:
    return {"to": to, "attempt": 1, "reason": kw.pop("reason", None),
            "detail": kw.pop("detail", f"worker says {to}"), "shown_reason": None, "kw": kw}


def test_a_workers_result_is_recorded_with_its_host_and_worker(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {"scope": {"allow": ["a.txt"]}}}) as k:
        patch = k.queue("x", {"a.txt": "A\n"})  # a patch commit in the repository
        _pushed(k, "a", patch)
        ex = _executor(k.path, k.ledger.run)
        res = _result(patch, _rec("created", patch=patch, evidence={"tool.stdout": b"hi\n"}),
                      _rec("validated"), _rec("queued"))
        out = ex._record(k.ctx, "a", 1, res)
        assert out.state == "queued"
        assert k.state("a") == "queued"
        tip = k.ledger.tip
        trailers = parse_trailers(get_commit(k.repo, tip).message)
        assert trailers[HOST_TRAILER] == "host-b"
        assert trailers[WORKER_TRAILER] == "tcp://10.0.0.2:40000"


def test_the_coordinator_judges_validation_itself(tmp_path: Path) -> None:
    with kit(tmp_path, {"a": {"scope": {"allow": ["a.txt"]}}}) as k:
        patch = k.queue("x", {"elsewhere.txt": "X\n"})  # outside a's scope
        _pushed(k, "a", patch)
        ex = _executor(k.path, k.ledger.run)
        res = _result(patch, _rec("created", patch=patch), _rec("validated"), _rec("queued"))
        out = ex._record(k.ctx, "a", 1, res)
        assert (out.state, out.reason) == ("quarantined", "scope-violation")
        assert k.state("a") == "quarantined"
        assert [t[2] for t in k.observer.transitions if t[0] == "a"] == ["created",
                                                                          "quarantined"]


def test_a_workers_report_cannot_name_ledger_facts(tmp_path: Path) -> None:
    """Its trailers are kept only where a worker measures them; a state outside the worker
    path, or a patch other than the inbox ref's, is refused."""
    with kit(tmp_path, {"a": {}}) as k:
        patch = k.queue("x", {"a.txt": "A\n"})
        _pushed(k, "a", patch)
        ex = _executor(k.path, k.ledger.run)
        forged = {"Uet-Integration": patch, "Uet-Worker-Seconds": "1.5"}
        res = _result(patch, _rec("created", patch=patch), _rec("validated"),
                      _rec("queued", trailers=forged))
        ex._record(k.ctx, "a", 1, res)
        trailers = parse_trailers(get_commit(k.repo, k.ledger.tip).message)
        assert trailers.get("Uet-Worker-Seconds") == "1.5"
        assert trailers.get("Uet-Integration") != patch
        with pytest.raises(UetError, match="transition to 'committed'"):
            ex._record(k.ctx, "a", 1, _result(patch, _rec("committed")))
        other = k.queue("y", {"b.txt": "B\n"})
        with pytest.raises(UetError, match="the inbox ref holds"):
            ex._record(k.ctx, "a", 1, _result(other, _rec("created", patch=other)))

