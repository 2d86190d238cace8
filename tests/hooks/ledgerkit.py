"""Scripted runs for the ledger readers' tests: real patch and candidate commits, recorded with
the real writer (``uet_git.ledger.writer.Ledger``).

The standard run (``scripted_run``), plan ``a -> b`` (b depends on a), ``c``, ``d``, ``e``:
- a: created -> validated -> queued -> applied -> verified -> committed (candidate on base)
- c: the same, its candidate on top of a's (integration = base, a, c)
- b: created -> validated -> queued -> quarantined (verify-failed), with evidence
- d: enters quarantined (tool-failed), no patch
- e: created -> quarantined (scope-violation) -> dropped

The standard run is recorded by the writer once per process for each starting point (the base
commit and the identity git would record), then laid down again, byte for byte, in the next
repository that starts from the same point (``_replay``): the same loose objects, the same
loose refs, the same files under ``.git/uet``, so the readers under test see what the writer
would have written, only with the first recording's run id and times. A repository that
already holds uet refs or files, or an environment that moves git's object store or fixes its
dates, gets a real recording, and so does every further run asked for within one test (two
runs of one test never share a run id).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.conftest import git, handed_again
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


@dataclass(frozen=True)
class _Recorded:
    """What recording the standard run added below ``.git`` (path, mode, bytes), and what it
    recorded."""

    files: tuple[tuple[str, int, bytes], ...]
    scripted: Scripted


_RECORDED: dict[tuple[str, ...], _Recorded | None] = {}  # None: not replayable
_HANDED: dict[tuple[str, ...], str] = {}  # key -> the test it was last laid down for
_UNREPLAYABLE_ENV = ("GIT_DIR", "GIT_COMMON_DIR", "GIT_OBJECT_DIRECTORY",
                     "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE")


def _start_key(repo: Repo, path: Path, base: str) -> tuple[str, ...] | None:
    """What the writer's recording depends on (the base, the identities), or None when the
    repository is not a plain one without uet state (then it is recorded for real)."""
    gitdir = path / ".git"
    if any(os.environ.get(k) for k in _UNREPLAYABLE_ENV) or not gitdir.is_dir() \
            or repo.common_dir != gitdir.resolve() or repo.git_dir != repo.common_dir \
            or (gitdir / "refs" / "uet").exists() or (gitdir / "uet").exists() \
            or (gitdir / "reftable").exists():  # refs that are not loose files
        return None
    packed = gitdir / "packed-refs"
    if packed.exists() and b" refs/uet/" in packed.read_bytes():
        return None
    who = [objects.identity(repo, role) for role in ("author", "committer")]
    return (base, *(f"{p.name}\0{p.email}" for p in who))


def _loose(gitdir: Path) -> set[str]:
    objs = gitdir / "objects"
    return {f"objects/{d.name}/{f.name}" for d in objs.iterdir()
            if len(d.name) == 2 and d.is_dir() for f in d.iterdir()}


def _capture(path: Path, before: set[str], s: Scripted) -> _Recorded | None:
    """The files the recording added: its loose objects, its refs (all loose: the writer
    never packs), ``.git/uet``; None when the run names an object that was not written by it
    (it was there already, unreachable from the base: another repository may lack it)."""
    gitdir = path / ".git"
    names = sorted(_loose(gitdir) - before)
    for top in ("refs/uet", "uet"):
        names += sorted(str(f.relative_to(gitdir)) for f in (gitdir / top).rglob("*")
                        if f.is_file())
    tips = [(gitdir / n).read_text().strip() for n in names if n.startswith("refs/")]
    reachable = git(path, "rev-list", "--objects", "--no-object-names", *tips, "--not",
                    s.base).split()
    written = {n[8:10] + n[11:] for n in names if n.startswith("objects/")}
    if not set(reachable) <= written:
        return None
    files = tuple((n, (gitdir / n).stat().st_mode & 0o777, (gitdir / n).read_bytes())
                  for n in names)
    return _Recorded(files, replace(s, repo=None))  # type: ignore[arg-type]


def _replay(path: Path, rec: _Recorded) -> Scripted:
    gitdir = path / ".git"
    for name, mode, data in rec.files:
        f = gitdir / name
        if name.startswith("objects/") and f.exists():
            continue  # the same id: the same bytes
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        f.chmod(mode)
    s = rec.scripted
    return replace(s, repo=Repo.open(path), patches=dict(s.patches),
                   candidates=dict(s.candidates))


def scripted_run(path: Path, keep_open: bool = False) -> tuple[Scripted, Ledger | None]:
    """Record the standard run in the repository at ``path`` (laid down again from this
    process's earlier recording when it starts from the same point: see the module doc)."""
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base is not None
    key = None if keep_open else _start_key(repo, Path(path), base)
    if key is not None and handed_again(_HANDED, key):
        key = None  # a second run of one test: its own run id
    if key is not None:
        rec = _RECORDED.get(key)
        if rec is not None:
            return _replay(Path(path), rec), None
        before = _loose(Path(path) / ".git")
    s, led = _record(repo, base, keep_open)
    if key is not None and key not in _RECORDED:
        _RECORDED[key] = _capture(Path(path), before, s)
    return s, led


def _record(repo: Repo, base: str, keep_open: bool) -> tuple[Scripted, Ledger | None]:
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
