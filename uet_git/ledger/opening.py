"""A run's writer starting: ``run: start`` written for a new run, or an existing run's ledger
read back into the writer's memory, after the refs a killed writer left were made to agree
with it (stale ref locks removed, ``repair``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from uet_git.errors import UetError
from uet_git.gitrepo import objects
from uet_git.gitrepo.odb import MissingObject, tree_of
from uet_git.gitrepo.refs import RefConflict, RefTransaction
from uet_git.gitrepo.trailers import format_message
from uet_git.ledger import layout
from uet_git.ledger.evidence import FANOUT_ABOVE, fanned_out
from uet_git.ledger.expected import disagreements, recorded_integration
from uet_git.ledger.keepalive import Written, commit_keeping
from uet_git.ledger.lock import clear_stale_ref_locks
from uet_git.ledger.log import PLAN_PATH, LedgerLog, plan_deps, read_ledger, ws_record
from uet_git.ledger.memory import Memory
from uet_git.ledger.query import all_run_refs, state_refs_of
from uet_git.ledger.repair import repair_refs
from uet_git.ledger.transact import RefWriter, commit_retrying
from uet_git.ledger.words import plural

CONFIG_PATH = "config.json"


class RunExists(UetError):
    """``Ledger.create`` with a run id that is taken (a fresh id is tried when none was given)."""


def write_start(rw: RefWriter, base_oid: str, target: str | None, plan: Mapping[str, Any],
                config: Mapping[str, Any] | None) -> None:
    """The root ledger commit ``run: start`` (trailers Uet-Run, Uet-Base, Uet-Target; tree
    ``plan.json`` [+ ``config.json``]) and ``integration/RUN = base``, in one transaction;
    fills the writer's memory."""
    repo, mem = rw.repo, rw.mem
    run = mem.run
    files = {PLAN_PATH: (json.dumps(plan, indent=2, sort_keys=True, default=str)
                         + "\n").encode()}
    if config is not None:
        files[CONFIG_PATH] = (
            json.dumps(config, indent=2, sort_keys=True, default=str) + "\n"
        ).encode()
    trailers = [("Uet-Run", run), ("Uet-Base", base_oid)]
    if target is not None:
        trailers.append(("Uet-Target", target))
    n = len(plan_deps(plan))
    body = f"uet run {run} from {base_oid[:12]}" + (f" onto {target}" if target else "")
    body += f"; {plural(n, 'workstream')} planned" if n else ""
    written = Written(objects.empty_tree(repo), files, None,
                      format_message("run: start", body, trailers),
                      objects.identity(repo, "author"),
                      objects.identity(repo, "committer"))
    commit = written.write(repo)

    def build() -> RefTransaction:
        tx = rw.transaction()
        tx.create(layout.ledger_ref(run), commit)
        tx.create(layout.integration_ref(run), base_oid)
        return tx

    try:
        # A concurrent prune can take the new root commit before its ref exists.
        commit_keeping(rw.keep, build, written, commit_retrying)
    except RefConflict as exc:
        raise RunExists(f"run {run} already exists ({exc})") from None
    mem.base, mem.target, mem.plan = base_oid, target, dict(plan)
    mem.tip, mem.tree, mem.integration = commit, written.tree, base_oid
    mem.fanout = n > FANOUT_ABOVE


def load(rw: RefWriter, repair: bool) -> None:
    """Read an existing run into the writer's memory (``Ledger.open``): stale ref locks of a
    killed writer removed and the refs repaired first; refs that otherwise disagree with the
    ledger raise unless ``repair``."""
    repo, mem = rw.repo, rw.mem
    run = mem.run
    stale = clear_stale_ref_locks(repo, run)
    if stale or repair:
        notes = ["removed stale ref locks of a killed writer: " + ", ".join(stale)] \
            if stale else []
        repair_refs(repo, run, updater=rw.updater, notes=notes, keep=rw.keep)
    refs = all_run_refs(repo, run)
    tip = refs.get(layout.ledger_ref(run))
    if tip is None:
        raise UetError(f"no run {run} in this repository (no {layout.ledger_ref(run)})")
    log = read_ledger(repo, run, tip=tip)
    if log.base is None:
        raise UetError(f"run {run}: the ledger has no `run: start` commit with Uet-Base")
    fixes = disagreements(log, refs)
    if fixes:
        shown = "; ".join(why for *_, why in fixes[:3])
        raise UetError(f"run {run}: refs disagree with the ledger ({shown}); "
                       f"run `uet fsck --repair {run}`")
    mem.base, mem.target = log.base, log.target
    # The ledger, not the ref, says where integration is: the ref agrees (checked above)
    # or `uet gc` removed it (created again on the next move).
    mem.tip, mem.integration = tip, recorded_integration(log) or log.base
    mem.integration_ref = layout.integration_ref(run) in refs
    try:
        mem.tree = tree_of(repo, tip)
        raw = objects.read_blob(repo, tip, PLAN_PATH)
    except MissingObject as exc:
        raise UetError(f"run {run}: {layout.ledger_ref(run)}: {exc}; run "
                       f"`uet fsck --repair {run}`", exit_code=1) from None
    try:
        mem.plan = json.loads(raw) if raw else {}
    except ValueError:
        mem.plan = {}
    layout_now = fanned_out(repo, mem.tree)  # what the run's evidence already uses
    mem.fanout = layout_now if layout_now is not None else \
        len(plan_deps(mem.plan)) > FANOUT_ABOVE
    _load_states(mem, log, refs)


def _load_states(mem: Memory, log: LedgerLog, refs: Mapping[str, str]) -> None:
    by_ws: dict[str, list[Any]] = {}
    for e in log.transitions():
        by_ws.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
    state_refs = state_refs_of(refs, mem.run)
    for ws, events in by_ws.items():
        rec = ws_record(ws, events)
        found = state_refs.get(ws, [])
        if found:
            _, rec.ref, rec.target = found[0]
        else:
            rec.collected = True
        mem.states[ws] = rec
    for name, oid in refs.items():
        p = layout.parse_ref(name)
        if p is not None and p.kind == "patch" and p.ws and p.attempt:
            mem.patches[(p.ws, p.attempt)] = oid
