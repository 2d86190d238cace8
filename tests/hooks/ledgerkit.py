"""Scripted runs for the ledger readers' tests: real patch and candidate commits, recorded with
the real writer (``uet_git.ledger.writer.Ledger``).

The standard run (``scripted_run``), plan ``a -> b`` (b depends on a), ``c``, ``d``, ``e``:
- a: created -> validated -> queued -> applied -> verified -> committed (candidate on base)
- c: the same, its candidate on top of a's (integration = base, a, c)
- b: created -> validated -> queued -> quarantined (verify-failed), with evidence
- d: enters quarantined (tool-failed), no patch
- e: created -> quarantined (scope-violation) -> dropped
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from uet_git.gitrepo import Repo, objects
from uet_git.ledger.writer import Ledger

PLAN = {  # the shape of the engine's plan.json (nodes in plan order)
    "nodes": [
        {"id": "a", "depends_on": []},
        {"id": "c", "depends_on": []},
        {"id": "d", "depends_on": []},
        {"id": "e", "depends_on": []},
        {"id": "b", "depends_on": ["a"]},
    ],
}


@dataclass
class Scripted:
    repo: Repo
    run: str
    base: str
    patches: dict[str, str] = field(default_factory=dict)
    candidates: dict[str, str] = field(default_factory=dict)
    integration: str = ""


def uet_commit(repo: Repo, parent: str, files: dict[str, str], ws: str, run: str,
               attempt: int = 1, subject: str | None = None) -> str:
    """A commit on ``parent`` changing ``files``, with the trailers of a uet patch."""
    tree = objects.build_tree(repo, objects.commit_tree(repo, parent),
                              {k: v.encode() for k, v in files.items()})
    msg = (f"{subject or ws + ': change'}\n\nUet-Workstream: {ws}\nUet-Run: {run}\n"
           f"Uet-Tool: shell\nUet-Attempt: {attempt}\n")
    return objects.make_commit(repo, tree, [parent], msg)


def commit_ws(led: Ledger, s: Scripted, ws: str, content: str | None = None,
              evidence: dict[str, bytes] | None = None) -> None:
    """Take ``ws`` from nothing to committed onto the integration tip."""
    repo, run = s.repo, s.run
    files = {f"{ws}.txt": content or f"{ws}\n"}
    patch = uet_commit(repo, s.base, files, ws, run)
    led.record(ws, "created", attempt=1, patch=patch,
               evidence=evidence or {"tool.stdout": f"{ws} tool ran\n".encode()})
    led.record(ws, "validated", attempt=1)
    led.record(ws, "queued", attempt=1)
    tip = led.integration_tip()
    cand = patch if tip == s.base else uet_commit(repo, tip, files, ws, run)
    led.record(ws, "applied", attempt=1, candidate=cand)
    led.record(ws, "verified", attempt=1, evidence={"acceptance.log": b"1 passed\n"})
    led.record(ws, "committed", attempt=1, integration=cand)
    s.patches[ws], s.candidates[ws], s.integration = patch, cand, cand


def scripted_run(path: Path, keep_open: bool = False) -> tuple[Scripted, Ledger | None]:
    """Record the standard run in the repository at ``path``."""
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base is not None
    led = Ledger.create(repo, base=base, target="main", plan=PLAN)
    s = Scripted(repo=repo, run=led.run, base=base, integration=base)
    commit_ws(led, s, "a")
    commit_ws(led, s, "c")
    pb = uet_commit(repo, base, {"b.txt": "b\n"}, "b", s.run)
    led.record("b", "created", attempt=1, patch=pb, evidence={"tool.stdout": b"b out\n"})
    led.record("b", "validated", attempt=1)
    led.record("b", "queued", attempt=1)
    led.record("b", "quarantined", attempt=1, reason="verify-failed",
               evidence={"acceptance.log": b"FAILED test_b\n"}, summary="acceptance failed")
    s.patches["b"] = pb
    led.record("d", "quarantined", attempt=1, reason="tool-failed",
               evidence={"tool.stderr": b"boom\n"})
    pe = uet_commit(repo, base, {"secret.txt": "x\n"}, "e", s.run)
    led.record("e", "created", attempt=1, patch=pe)
    led.record("e", "quarantined", attempt=1, reason="scope-violation")
    led.record("e", "dropped", attempt=1)
    s.patches["e"] = pe
    if keep_open:
        return s, led
    led.close()
    return s, None


EXPECTED_STATES = {"a": "committed", "c": "committed", "b": "quarantined", "d": "quarantined",
                   "e": "dropped"}
