"""Scripted runs for command tests: ledger states recorded with the real Ledger writer on real
patch/candidate commits, and git-CLI checks of the result."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.conftest import copy_repo, fsck_quick, git, handed_again, make_repo
from uet_git.commands.land import LandResult, land
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger

FILES = {"a.txt": "alpha\n", "b.txt": "beta\n", "src/c.txt": "gamma\n"}


@dataclass
class Built:
    path: Path
    repo: Repo
    run: str
    base: str
    tip: str
    candidates: dict[str, str] = field(default_factory=dict)
    patches: dict[str, str] = field(default_factory=dict)


# Runs recorded in a new repository, by what went into them: the next test asking for the
# same one in a path that does not exist yet gets a copy (its objects, refs, ledger and checkout
# byte for byte) instead of a recording: the same commits and run id, so not within one test,
# where two runs must have ids of their own.
_RECORDED: dict[tuple[object, ...], Built] = {}
_HANDED: dict[tuple[object, ...], str] = {}  # key -> the test it was last handed to
_CACHE_DIR: list[Path] = []


def _cache_dir() -> Path:
    if not _CACHE_DIR:
        # Where the tests' tmp_path is (conftest: /dev/shm when it is roomy), so copies
        # from it cost what copies within tmp_path do.
        d = Path(tempfile.mkdtemp(prefix="landkit-", dir=os.environ.get("PYTEST_DEBUG_TEMPROOT")))
        atexit.register(shutil.rmtree, d, True)
        _CACHE_DIR.append(d)
    return _CACHE_DIR[0]


def _key(steps: Sequence[tuple[str, str, Mapping[str, bytes | None]]],
         deps: Mapping[str, list[str]] | None, target: str | None,
         files: Mapping[str, str] | None) -> tuple[object, ...]:
    return (tuple((ws, outcome, tuple(sorted(changes.items()))) for ws, outcome, changes in steps),
            tuple(sorted((k, tuple(v)) for k, v in (deps or {}).items())), target,
            tuple(sorted((files or FILES).items())),
            tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("GIT_"))))


def _copy_of(rec: Built, path: Path) -> Built:
    copy_repo(rec.path, path)
    return replace(rec, path=path, repo=Repo.open(path), candidates=dict(rec.candidates),
                   patches=dict(rec.patches))


def scripted_run(
    path: Path,
    steps: Sequence[tuple[str, str, Mapping[str, bytes | None]]],
    *,
    deps: Mapping[str, list[str]] | None = None,
    target: str | None = "main",
    files: Mapping[str, str] | None = None,
) -> Built:
    """A repository with one commit and a run whose workstreams went through ``steps``:
    ``(ws, outcome, changes)`` with outcome ``committed``, ``quarantined:REASON`` (after a
    patch), ``failed:REASON`` (no patch), ``blocked`` or ``pending`` (planned, never
    recorded). Committed candidates stack on the integration tip in order. In a new ``path``,
    a copy of this process's earlier recording of the same run when there is one."""
    key = None
    if not path.exists():
        key = _key(steps, deps, target, files)
        if handed_again(_HANDED, key):
            key = None  # a second run of one test: a recording of its own
        elif key in _RECORDED:
            return _copy_of(_RECORDED[key], path)
    built = _record(path, steps, deps=deps, target=target, files=files)
    if key is not None:
        kept = _cache_dir() / str(len(_RECORDED))
        shutil.copytree(path, kept, symlinks=True)
        _RECORDED[key] = replace(built, path=kept, repo=None)  # type: ignore[arg-type]
    return built


def _record(
    path: Path,
    steps: Sequence[tuple[str, str, Mapping[str, bytes | None]]],
    *,
    deps: Mapping[str, list[str]] | None,
    target: str | None,
    files: Mapping[str, str] | None,
) -> Built:
    if not (path / ".git").exists():
        make_repo(path, dict(files or FILES))
    repo = Repo.open(path)
    base = repo.rev_parse("HEAD")
    assert base is not None
    deps = dict(deps or {})
    plan = {"nodes": [{"id": ws, "depends_on": deps.get(ws, [])} for ws, _, _ in steps]}
    built = Built(path, repo, "", base, base)
    with Ledger.create(repo, base=base, target=target, plan=plan) as ledger:
        built.run = ledger.run
        for ws, outcome, changes in steps:
            if outcome == "pending":
                continue
            if outcome == "blocked":
                ledger.record(ws, "blocked", attempt=1, summary="dependency quarantined")
                continue
            if outcome.startswith("failed:"):  # the tool failed: no patch at all
                ledger.record(ws, "quarantined", attempt=1, reason=outcome.split(":", 1)[1])
                continue
            msg = f"{ws}: scripted change\n\nUet-Workstream: {ws}\nUet-Run: {ledger.run}\n"
            patch = make_commit(repo, build_tree(repo, built.tip, changes), [built.tip], msg)
            built.patches[ws] = patch
            ledger.record(ws, "created", attempt=1, patch=patch)
            ledger.record(ws, "validated", attempt=1)
            ledger.record(ws, "queued", attempt=1)
            if outcome.startswith("quarantined:"):
                ledger.record(ws, "quarantined", attempt=1, reason=outcome.split(":", 1)[1])
                continue
            assert outcome == "committed", outcome
            # The candidate: the patch merged onto the tip (here the patch is built on the tip).
            cand = make_commit(repo, build_tree(repo, built.tip, changes), [built.tip], msg)
            ledger.record(ws, "applied", attempt=1, candidate=cand)
            ledger.record(ws, "verified", attempt=1)
            ledger.record(ws, "committed", attempt=1, integration=cand)
            built.candidates[ws] = cand
            built.tip = cand
    return built


def two_committed(tmp_path: Path, **kw: object) -> Built:
    return scripted_run(tmp_path / "repo", [
        ("ws-a", "committed", {"a.txt": b"alpha changed by ws-a\n"}),
        ("ws-b", "committed", {"new/file.txt": b"added by ws-b\n", "b.txt": None}),
    ], **kw)  # type: ignore[arg-type]


def fsck_clean(path: Path) -> None:
    git(path, *fsck_quick(path), "fsck", "--strict", "--no-progress")


def head_of(path: Path, ref: str = "refs/heads/main") -> str:
    return git(path, "rev-parse", ref)


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(root).parts}


def open_land(b: Built, **kw: object) -> LandResult:
    with Ledger.open(b.repo, b.run) as ledger:
        return land(b.repo, ledger, **kw)  # type: ignore[arg-type]
