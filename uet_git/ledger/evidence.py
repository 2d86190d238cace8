"""Evidence of a run: the blobs under ``evidence/WS/ATTEMPT/`` (and ``run/``) of the ledger
tip's tree. Each blob is kept up to ``MAX_EVIDENCE`` bytes (1 MiB); beyond that its head and
tail are kept around a marker line saying how much was cut."""

from __future__ import annotations

from collections.abc import Mapping

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import MissingObject, list_tree, read_blob, walk_tree
from uet_git.ledger.log import missing_object, read_ledger, ws_record

MAX_EVIDENCE = 1 << 20  # bytes kept per evidence blob


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
    entry = next((e for e in list_tree(repo, commit, f"evidence/{ws}")
                  if e.name == str(attempt)), None)
    return entry.oid if entry is not None and entry.kind == "tree" else None


def evidence_attempts(repo: Repo, run: str, ws: str) -> list[int]:
    log = read_ledger(repo, run)
    try:
        entries = list_tree(repo, log.tip, f"evidence/{ws}")
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
