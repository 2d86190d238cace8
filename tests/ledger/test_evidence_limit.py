"""Tool output kept as evidence up to the ledger's limit (``MAX_EVIDENCE``, 1 MiB, as the README
promises), through the ``uet`` command: the engine and the workers cut no earlier."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.helpers import last_run, run_ok, setup_repo
from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.evidence import MAX_EVIDENCE

LINE = 8  # "%07d\n"


def _printing(path: Path, kib: int) -> tuple[Path, bytes]:
    lines = kib * 1024 // LINE
    # seq prints the same lines as "%07d\n" % i below (every i < 10**6), without an
    # interpreter starting up in the tool's sandbox.
    assert lines <= 10**6
    repo = setup_repo(path, workstreams={
        "w": {"command": f"seq -f %07g 0 {lines - 1}; echo x > x.txt"}})
    return repo, b"".join(b"%07d\n" % i for i in range(lines))


def _stdout_evidence(repo: Path) -> bytes:
    run_ok(repo, "run", "--jobs", "1")
    return query.evidence(Repo.open(repo), last_run(repo), "w", 1, "tool.stdout")


def test_300_kib_of_tool_output_is_kept_whole(tmp_path: Path) -> None:
    repo, printed = _printing(tmp_path / "r", 300)
    assert _stdout_evidence(repo) == printed


def test_2_mib_keeps_head_and_tail_around_one_marker(tmp_path: Path) -> None:
    repo, printed = _printing(tmp_path / "r", 2048)
    kept = _stdout_evidence(repo)
    assert MAX_EVIDENCE - 4096 < len(kept) <= MAX_EVIDENCE
    assert kept.count(b"bytes omitted") + kept.count(b"bytes cut here") == 1
    head, _, rest = kept.partition(b"\n... [")
    _, _, tail = rest.partition(b"] ...\n")
    assert head and tail and printed.startswith(head) and printed.endswith(tail)
    assert len(head) + len(tail) > MAX_EVIDENCE - 4096
