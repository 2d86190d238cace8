"""A workstream's definition as the run now holds it: the one recorded in ``plan.json`` when
the run started, replaced by the newer one ``uet retry`` recorded after the workstream's file
changed (a ``run: respec`` ledger event: ``Uet-Respec: WS``, the new definition as JSON in the
evidence blob ``run/respec/WS.json``, the fields that differ in the body). Resume, retry and
partial landing read workstreams through ``recorded_workstreams``, so the recorded spec of the
new attempt is the one every later step uses, never the file of today."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uet_git.engine.inputs import workstreams_from_record
from uet_git.errors import UetError
from uet_git.gitrepo.objects import read_blob
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger
from uet_git.spec.load import load_workstreams
from uet_git.spec.models import Workstream

RESPEC_EVENT = "run: respec"
RESPEC_TRAILER = "Uet-Respec"
# Fields that say where the definition came from, not what it asks for.
_NOT_COMPARED = frozenset({"source"})


def _blob_name(ws: str) -> str:
    return f"respec/{ws}.json"


def _dump(ws: Workstream) -> dict[str, Any]:
    d = ws.model_dump(mode="json")
    d["source"] = ws.source
    return d


def recorded_workstreams(repo: Repo, ledger: Ledger) -> list[Workstream]:
    """The run's workstreams: ``plan.json``'s, each replaced by its latest respec."""
    by_id = {ws.id: ws for ws in workstreams_from_record(ledger.plan or {})}
    if not by_id:
        return []
    for e in query.read_ledger(repo, ledger.run).run_events(RESPEC_EVENT):
        ws_id = e.trailers.get(RESPEC_TRAILER)
        if e.subject != RESPEC_EVENT or ws_id not in by_id:
            continue
        raw = read_blob(repo, e.oid, f"run/{_blob_name(ws_id)}")
        if raw:
            by_id[ws_id] = workstreams_from_record({"workstreams": [json.loads(raw)]})[0]
    return list(by_id.values())


def field_changes(old: Workstream, new: Workstream) -> list[str]:
    """One line per field whose value differs: ``FIELD: OLD -> NEW`` (JSON values)."""
    a, b = _dump(old), _dump(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in _NOT_COMPARED or a.get(key) == b.get(key):
            continue
        out.append(f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
    return out


def reread(repo: Repo, ledger: Ledger, ws_id: str) -> tuple[Workstream, Workstream] | None:
    """``(recorded, from_file)`` when the file the workstream was read from now defines it
    differently (the fields ``field_changes`` compares), None when it is unchanged. A file that
    is gone, no longer defines ``ws_id``, or does not load is a one-line UetError (retry with
    ``--frozen`` to keep the recorded definition); a change of ``id`` or ``depends_on`` is
    refused too: the run's plan is fixed."""
    recorded = next((w for w in recorded_workstreams(repo, ledger) if w.id == ws_id), None)
    if recorded is None or not recorded.source:
        return None
    path = Path(recorded.source)
    if not path.is_absolute():
        path = repo.workdir / path
    frozen = "retry with --frozen to keep the recorded definition"
    if not path.is_file():
        raise UetError(f"{path}: the file {ws_id} was read from is gone; {frozen}")
    loaded = load_workstreams([path])
    if not loaded.ok:
        raise UetError(f"{path}: {loaded.errors[0]}; fix it, or {frozen}")
    new = next((w for w in loaded.workstreams if w.id == ws_id), None)
    if new is None:
        raise UetError(f"{path} no longer defines workstream {ws_id}; {frozen}")
    new._source = recorded.source
    changes = field_changes(recorded, new)
    if not changes:
        return None
    if sorted(new.depends_on) != sorted(recorded.depends_on):
        raise UetError(f"{path}: depends_on of {ws_id} changed since run {ledger.run} started "
                       f"({recorded.depends_on} -> {new.depends_on}); the run's plan is fixed: "
                       f"start a new run, or {frozen}")
    return recorded, new


def record_respec(ledger: Ledger, recorded: Workstream, new: Workstream) -> list[str]:
    """Record ``new`` as the workstream's definition from now on; returns the changed fields."""
    changes = field_changes(recorded, new)
    body = (f"{new.id}: definition re-read from {new.source} for the next attempt:\n"
            + "\n".join(changes))
    ledger.event(RESPEC_EVENT, body, trailers={RESPEC_TRAILER: new.id},
                 evidence={_blob_name(new.id): json.dumps(_dump(new), indent=2,
                                                          sort_keys=True).encode()})
    return changes
