"""The verdict cache of a run: the same tree is never judged twice by the same checks.

Two kinds of pass are kept, each keyed by the tree oid and by what judged it:

- acceptance: ``(tree, acceptance_key(ws))`` where the key hashes the workstream's acceptance
  commands, its ``env`` and its timeout (the environment uet adds, ``UET_*``, names the
  candidate and never changes what a tree is);
- hooks: ``(tree, hooks_key(checks))`` where the key hashes the run's base commit (the hooks
  are always the base's) and the hooks it holds.

Only passes are cached: a failure is re-checked once on its own (the flake check of
``engine/queue.py``), and a cached failure would answer that check without running it.

Persistence (resume and retry included): nothing of its own. ``from_ledger`` derives the cache
from the run's ledger: a ``queued`` transition after acceptance passed on the patch (its tree,
acceptance only; with the queue, the tree of ``Uet-Accepted-On``: the worker may have judged the
patch on the queue's tail), a ``verified`` transition (the candidate's tree, acceptance and
hooks), and the ``run: verdict`` events the queue writes for passes on speculative candidates
that did not (yet) become a state: those carry ``Uet-Verdict-Of`` (the workstream),
``Uet-Verdict-Tree``, ``Uet-Verdict-Acceptance`` and ``Uet-Verdict-Hooks`` (the two keys; ``-``
when that part did not run; a batch's candidate, ``[verify] batch``, lists the acceptance keys
of its workstreams separated by commas) and ``Uet-Verdict`` (``passed`` or ``failed``; a failure
is evidence only). A ``verified`` transition of a patch judged in a batch carries
``Uet-Batch-Candidate``: the batch's candidate, whose tree its checks passed on (its own
candidate's tree was not judged).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable, Mapping

from uet_git.gitrepo import odb
from uet_git.gitrepo.repo import Repo
from uet_git.hooks.premerge import Hook
from uet_git.ledger.log import Event
from uet_git.spec.models import Workstream

VERDICT_EVENT = "run: verdict"
ACCEPTED_ON = "Uet-Accepted-On"  # on `queued`: the commit whose tree the worker's acceptance passed
BATCH_CANDIDATE = "Uet-Batch-Candidate"  # on `verified`: the batch candidate its checks passed on
NONE = "-"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def acceptance_key(ws: Workstream) -> str:
    """What the workstream's acceptance depends on besides the tree."""
    return _digest({"acceptance": list(ws.acceptance), "env": dict(ws.env or {}),
                    "timeout": ws.timeout})


def hooks_key(base: str, hooks: Iterable[Hook]) -> str:
    """What the pre-merge hooks depend on besides the tree: the base they come from."""
    return _digest({"base": base, "hooks": [[h.name, h.command, h.path] for h in hooks]})


class VerdictCache:
    """Thread-safe set of passes; verifier threads add, everyone reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._passed: set[tuple[str, str, str]] = set()  # (kind, tree, key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._passed)

    def add(self, kind: str, tree: str, key: str) -> None:
        with self._lock:
            self._passed.add((kind, tree, key))

    def passed(self, kind: str, tree: str, key: str) -> bool:
        with self._lock:
            return (kind, tree, key) in self._passed


def verdict_trailers(ws: str, tree: str, *, passed: bool, acceptance: str | list[str] | None,
                     hooks: str | None, candidate: str) -> dict[str, str]:
    """The trailers of a ``run: verdict`` event (see the module doc)."""
    keys = ",".join(acceptance) if isinstance(acceptance, list) else acceptance
    return {"Uet-Verdict-Of": ws, "Uet-Verdict-Tree": tree,
            "Uet-Verdict-Acceptance": keys or NONE, "Uet-Verdict-Hooks": hooks or NONE,
            "Uet-Verdict": "passed" if passed else "failed",
            "Uet-Speculative-Candidate": candidate}


def from_ledger(repo: Repo, events: Iterable[Event], workstreams: Mapping[str, Workstream],
                base: str, hooks: Iterable[Hook]) -> VerdictCache:
    """The passes a run's ledger records (see the module doc); ``base`` and ``hooks``: the
    run's checks."""
    cache = VerdictCache()
    hk = hooks_key(base, hooks)
    for e in events:
        if e.ws is None:
            t = e.trailers
            if e.subject.startswith(VERDICT_EVENT) and t.get("Uet-Verdict") == "passed":
                tree = t.get("Uet-Verdict-Tree", "")
                if t.get("Uet-Verdict-Acceptance", NONE) != NONE:
                    for key in t["Uet-Verdict-Acceptance"].split(","):
                        cache.add("acceptance", tree, key)
                if t.get("Uet-Verdict-Hooks", NONE) != NONE:
                    cache.add("hooks", tree, t["Uet-Verdict-Hooks"])
            continue
        ws = workstreams.get(e.ws)
        if ws is None:
            continue
        oid = e.patch if e.to == "queued" else e.candidate if e.to == "verified" else None
        if e.to == "queued" and ACCEPTED_ON in e.trailers:
            oid = e.trailers[ACCEPTED_ON]  # the worker judged the patch on the queue's tail
        if e.to == "verified" and BATCH_CANDIDATE in e.trailers:
            oid = e.trailers[BATCH_CANDIDATE]  # judged in a batch: on the batch's tree
        if oid is None or not odb.has_object(repo, oid):
            continue
        tree = odb.tree_of(repo, oid)
        if e.to == "queued" and ws.acceptance and e.from_ == "validated":
            cache.add("acceptance", tree, acceptance_key(ws))
        elif e.to == "verified":
            cache.add("acceptance", tree, acceptance_key(ws))
            cache.add("hooks", tree, hk)
    return cache
