"""Evidence of a run: the blobs under ``evidence/WS/ATTEMPT/`` (and ``run/``) of the ledger
tip's tree. Each blob is kept up to ``MAX_EVIDENCE`` bytes (1 MiB); beyond that its head and
tail are kept around a marker line saying how much was cut.

A run of more than ``FANOUT_ABOVE`` workstreams fans its evidence out:
``evidence/_XY/WS/ATTEMPT/`` with ``XY`` the first two hex digits of sha1(WS) (``_XY`` is never
a workstream id: ids start with a letter or digit). Every transition rewrites the trees on its
evidence path, and a flat ``evidence/`` tree holds one entry per workstream: at 10,000
workstreams that is a ~350 KB tree written again by each of ~60,000 transitions (quadratic
growth of ``.git``). Fanned out, the trees a transition writes stay under ~10 KB whatever the
run's size. Which layout a run uses is decided by its writer at ``run: start`` (from the plan)
and read back from the tree; readers accept both (``ws_evidence_dir``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import MissingObject, list_tree, read_blob, walk_tree
from uet_git.ledger.log import missing_object, read_ledger, ws_record

MAX_EVIDENCE = 1 << 20  # bytes kept per evidence blob
FANOUT_ABOVE = 256  # workstreams in a run's plan beyond which its evidence is fanned out


def bucket(ws: str) -> str:
    """The fan-out directory of ``ws``'s evidence (``_`` + two hex digits)."""
    return "_" + hashlib.sha1(ws.encode()).hexdigest()[:2]


def evidence_prefix(ws: str, attempt: int, fanout: bool) -> str:
    """Where a transition of ``ws`` writes its evidence in the ledger tree."""
    return f"evidence/{bucket(ws)}/{ws}/{attempt}" if fanout else f"evidence/{ws}/{attempt}"


def fanned_out(repo: Repo, tree_or_commit: str) -> bool | None:
    """The evidence layout a ledger tree uses: True (fanned out), False (flat), None (no
    workstream evidence yet)."""
    entries = [e for e in list_tree(repo, tree_or_commit, "evidence") if e.kind == "tree"]
    if not entries:
        return None
    return entries[0].name.startswith("_")


def ws_evidence_dir(repo: Repo, commit: str, ws: str) -> str:
    """The path of ``ws``'s evidence directory in ``commit``'s tree (``evidence/WS`` or
    ``evidence/_XY/WS``), the flat one when neither exists."""
    flat = f"evidence/{ws}"
    if list_tree(repo, commit, flat):
        return flat
    fanned = f"evidence/{bucket(ws)}/{ws}"
    return fanned if list_tree(repo, commit, fanned) else flat


def truncate(data: bytes, limit: int = MAX_EVIDENCE) -> bytes:
    """``data`` if it fits in ``limit`` bytes, else its head and tail around a marker line
    that says how many bytes were cut."""
    if len(data) <= limit:
        return data
    reserve = 160  # room for the marker line
    keep = max(limit - reserve, 2)
    head, tail = keep // 2, keep - keep // 2
    cut = len(data) - head - tail
    marker = (f"\n[uet: {cut} bytes cut here; the original had {len(data)} bytes, "
              f"the first {head} and last {tail} are kept]\n").encode()
    return data[:head] + marker + data[len(data) - tail:]


def _check_name(name: str) -> None:
    if not isinstance(name, str) or any(p in ("", ".", "..") or "\0" in p
                                        or p.lower() == ".git" for p in name.split("/")):
        raise UetError(f"bad evidence name {name!r}")


def evidence_files(prefix: str, evidence: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """``{prefix/NAME: bytes}`` for a ledger tree, each truncated to ``MAX_EVIDENCE``."""
    files: dict[str, bytes] = {}
    for name, data in (evidence or {}).items():
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UetError(f"evidence {name!r} must be bytes")
        _check_name(name)
        files[f"{prefix}/{name}"] = truncate(bytes(data))
    return files


def _evidence_dir(repo: Repo, commit: str, ws: str, attempt: int) -> str | None:
    """The tree id of ``evidence/WS/ATTEMPT`` in ``commit``'s tree (None if absent)."""
    entry = next((e for e in list_tree(repo, commit, ws_evidence_dir(repo, commit, ws))
                  if e.name == str(attempt)), None)
    return entry.oid if entry is not None and entry.kind == "tree" else None


def evidence_attempts(repo: Repo, run: str, ws: str) -> list[int]:
    log = read_ledger(repo, run)
    try:
        entries = list_tree(repo, log.tip, ws_evidence_dir(repo, log.tip, ws))
    except MissingObject as exc:
        raise missing_object(run, exc) from None
    return sorted(int(e.name) for e in entries if e.name.isdigit() and e.kind == "tree")


def evidence(
    repo: Repo, run: str, ws: str, attempt: int | None = None, name: str | None = None,
) -> list[str] | bytes:
    """Without ``name``: the evidence names of an attempt (default: the latest attempt of
    ``ws``), sorted. With ``name``: that blob's bytes. UetError when missing (exit 1 with
    the run and ref named when a concurrent prune removed an object)."""
    log = read_ledger(repo, run)
    if attempt is None:
        rec = ws_record(ws, log.transitions(ws))
        if rec.attempt is None:
            attempts = evidence_attempts(repo, run, ws)
            if not attempts:
                raise UetError(f"no workstream {ws!r} in the ledger of run {run}")
            attempt = attempts[-1]
        else:
            attempt = rec.attempt
    try:
        tree = _evidence_dir(repo, log.tip, ws, attempt)
        if tree is None:
            # Tolerate a ledger whose tips do not accumulate evidence: look in older commits.
            for e in reversed(log.events):
                tree = _evidence_dir(repo, e.oid, ws, attempt)
                if tree is not None:
                    break
        if name is None:
            if tree is None:
                return []
            return sorted(e.path for e in walk_tree(repo, tree))
        data = read_blob(repo, tree, name) if tree is not None else None
    except MissingObject as exc:
        raise missing_object(run, exc) from None
    if data is not None:
        return data
    raise UetError(f"no evidence {name!r} for {ws} attempt {attempt} in run {run}")


def evidence_path(repo: Repo, run: str, ws: str, attempt: int) -> str:
    """``evidence/WS/N`` or ``evidence/_XY/WS/N``: where ``git show refs/uet/ledger/RUN:PATH/NAME``
    finds the attempt's evidence at the ledger tip."""
    log = read_ledger(repo, run)
    try:
        return f"{ws_evidence_dir(repo, log.tip, ws)}/{attempt}"
    except MissingObject as exc:
        raise missing_object(run, exc) from None
