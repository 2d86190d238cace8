"""Seeding a run from what its ledger recorded: a table from recorded state to action.

What the ledger recorded is not redone; what it did not record is redone; nothing lands twice.
``ON_RESUME`` says what ``uet resume`` does with each state, ``ON_RETRY`` what changes for the
workstreams a ``uet retry`` names (``retry``). ``seed`` applies the tables to a run's records and
returns what the scheduler and the engine start from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from uet_git.gitrepo.odb import read_blob
from uet_git.gitrepo.repo import Repo
from uet_git.hooks.premerge import config_at
from uet_git.ledger.query import PENDING, WsRecord
from uet_git.ledger.states import State
from uet_git.ledger.writer import CONFIG_PATH, Ledger
from uet_git.plan.dag import Plan
from uet_git.spec.models import Config


class Action(StrEnum):
    RUN = "run"  # the tool runs (a new run's workstream; a blocked one whose dependency is back)
    NEW_ATTEMPT = "new-attempt"  # the tool runs again as the next attempt
    RUN_IF_UNBLOCKED = "run-if-unblocked"  # RUN unless a dependency failed for good, else KEEP
    RECHECK = "recheck"  # validation and acceptance again on the stored patch
    INTEGRATE = "integrate"  # to the integrator (which re-applies when the tip moved)
    DONE = "done"  # committed: counts as done for its dependents
    KEEP = "keep"  # stays as recorded (failed for this run); its dependents are blocked


ON_RESUME: Mapping[State | None, Action] = {
    None: Action.RUN,
    State.CREATED: Action.RECHECK,
    State.VALIDATED: Action.RECHECK,
    State.QUEUED: Action.INTEGRATE,
    State.APPLIED: Action.INTEGRATE,
    State.VERIFIED: Action.INTEGRATE,
    State.COMMITTED: Action.DONE,
    State.QUARANTINED: Action.KEEP,
    State.BLOCKED: Action.RUN_IF_UNBLOCKED,
    State.ROLLED_BACK: Action.KEEP,
    State.DROPPED: Action.KEEP,
}

# A retried workstream (``uet retry``): a quarantined one gets a new attempt, a blocked one
# runs (its dependencies are committed: the retry checked). The rest is as on resume.
ON_RETRY: Mapping[State | None, Action] = {
    **ON_RESUME,
    State.QUARANTINED: Action.NEW_ATTEMPT,
    State.BLOCKED: Action.RUN,
}

# States whose workstream failed for good in this run (unless retried): they block dependents.
_FAILED = frozenset({State.QUARANTINED, State.DROPPED, State.ROLLED_BACK})


@dataclass
class Seed:
    """What a run starts from. ``actions``: every workstream of the plan the records name.
    ``committed`` also holds committed workstreams outside ``include`` (a retried one's other
    dependencies count); ``block_dependents_of``: failed workstreams whose dependents must be
    blocked (a crash between a quarantine and its blocking)."""

    actions: dict[str, Action] = field(default_factory=dict)
    committed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    rechecks: dict[str, tuple[str, str]] = field(default_factory=dict)  # ws -> (patch, state)
    attempts: dict[str, int] = field(default_factory=dict)
    tip_after: dict[str, str] = field(default_factory=dict)  # committed ws -> its candidate
    block_dependents_of: list[str] = field(default_factory=list)


def action_for(state: State | str | None, *, retried: bool) -> Action:
    """What a resume does with a workstream recorded in ``state`` (None or ``pending``: never
    started); ``retried``: it is one a ``uet retry`` names."""
    key = None if state is None or state == PENDING else State(state)
    return (ON_RETRY if retried else ON_RESUME)[key]


def seed(plan: Plan, include: set[str], records: Mapping[str, WsRecord],
         retry: Iterable[str] = ()) -> Seed:
    """Apply the tables to ``records`` (a new run has none) over ``include``."""
    retry = set(retry)
    hard_failed = {ws for ws, r in records.items() if r.state in _FAILED and ws not in retry}
    out = Seed()
    for ws_id in plan.ids:
        rec = records.get(ws_id)
        if rec is None or rec.state == PENDING:
            continue  # never started: the scheduler runs it when its dependencies are done
        if ws_id not in include and rec.state != State.COMMITTED:
            continue
        action = action_for(rec.state, retried=ws_id in retry)
        if action is Action.RUN_IF_UNBLOCKED:
            action = Action.KEEP if plan.ancestors(ws_id) & hard_failed else Action.RUN
        out.actions[ws_id] = action
        attempt = rec.attempt or 1
        if action is Action.DONE:
            out.committed.append(ws_id)
            if rec.candidate:
                out.tip_after[ws_id] = rec.candidate
        elif action is Action.KEEP:
            out.failed.append(ws_id)
            if rec.state != State.BLOCKED:
                out.block_dependents_of.append(ws_id)
        elif action is Action.NEW_ATTEMPT:
            out.attempts[ws_id] = attempt + 1
        elif action is Action.RUN:
            out.attempts[ws_id] = attempt
        elif action is Action.INTEGRATE:
            out.queued.append(ws_id)
            out.attempts[ws_id] = attempt
        elif action is Action.RECHECK:
            assert rec.patch is not None, f"{ws_id} is {rec.state} without a patch"
            out.rechecks[ws_id] = (rec.patch, str(rec.state))
            out.attempts[ws_id] = attempt
    return out


def retry_sets(only: Iterable[str], records: Mapping[str, WsRecord]) -> tuple[set[str], set[str]]:
    """``(retry, reverify)`` of a ``uet retry`` over ``only``: the quarantined or blocked ones
    get a new attempt; a ``queued`` one was re-applied by ``--reapply`` (recorded quarantined ->
    queued just before), so its acceptance runs on the candidate whatever its tree."""
    retry = {ws for ws in only
             if ws in records and records[ws].state in (State.QUARANTINED, State.BLOCKED)}
    reverify = {ws for ws in only if ws in records and records[ws].state == State.QUEUED}
    return retry, reverify


def recorded_config(repo: Repo, ledger: Ledger) -> Config:
    """The configuration a run was started with (``config.json`` of its ledger), or, for a run
    recorded without one, what its base commit holds: never the user's checkout of today."""
    raw = read_blob(repo, ledger.tip, CONFIG_PATH)
    if raw:
        try:
            return Config.model_validate(json.loads(raw))
        except ValueError:
            pass
    return config_at(repo, ledger.base)
