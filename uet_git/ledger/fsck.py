"""Check that a run's refs and its ledger tell the same story. One line per violation.

What is checked, per run (all runs by default):
- the ledger's transitions follow the state machine (``states.TRANSITIONS``), attempt by attempt;
- every workstream the ledger knows has exactly one state ref, naming the state of its last
  transition (unless ``uet gc`` recorded a ``run: gc`` event after it, which removes the refs of
  finished workstreams) and pointing where the contract says: the candidate in
  applied/verified/committed, else the patch, else the ledger commit that recorded the move;
- no state ref, patch ref or other ref under ``refs/uet/`` exists without its ledger;
- every object the refs and the ledger's trailers name exists, and so does every blob of the
  ledger tip's tree (plan and evidence);
- patch refs: ``patches/RUN/WS/N`` is a one-parent commit, attempt N is in the ledger, and it is
  the patch the ledger recorded for that attempt;
- the integration ref descends first-parent from the run's base through exactly the committed
  workstreams, each once, each after its dependencies (``plan.json`` of the ledger). After
  ``uet land --rebase`` (a ``run: rebase`` event, ``Uet-Onto: X``) the chain starts at the
  newest such X instead: the commits between the base and X are the target's own, and so is
  the change of a committed workstream a rebase skipped as already in its X
  (``Uet-Already-Applied: a,b``): it is not looked for on the chain. Commits of
  rolled-back workstreams may stay on the chain (``uet rollback`` moves the target, not the
  integration ref); dropped, quarantined or unknown ones may not.
- speculative candidates (``candidates/RUN/N``, ``engine/queue.py``): none is left once the run
  finished, and each one's first-parent chain starts on the integration history (the recorded
  tip or a commit before it): a candidate is only ever built on the integration tip.
- inbox refs (``inbox/RUN/WS/N``, pushed by remote workers): one per attempt (by name), a
  commit whose Uet-Run/Uet-Workstream/Uet-Attempt trailers name that run, workstream and
  attempt, of a workstream the plan has; never moved: once the ledger recorded attempt N's
  patch, the inbox ref (until it is pruned) is that patch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from uet_git.errors import UetError
from uet_git.gitrepo import Repo
from uet_git.gitrepo.odb import (
    MissingObject,
    get_commit,
    has_object,
    list_tree,
    tree_of,
    walk_commits,
)
from uet_git.gitrepo.trailers import parse_trailers
from uet_git.ledger import query
from uet_git.ledger.expected import GC_EVENT, REBASE_EVENT, expected_refs, state_target
from uet_git.ledger.layout import (
    ALREADY_APPLIED,
    ROOT,
    candidate_prefix,
    inbox_prefix,
    parse_ref,
    state_ref,
)
from uet_git.ledger.states import TRANSITIONS
from uet_git.ledger.words import plural

_OID_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_KEPT_TRAILERS = ("Uet-Patch", "Uet-Candidate", "Uet-Base", "Uet-Onto")


def fsck(repo: Repo, run: str | None = None) -> list[str]:
    """Every violation found, one line each (empty = consistent). ``run`` None: all runs, plus
    refs under ``refs/uet/`` that belong to no run."""
    refs = repo.list_refs(ROOT)
    problems: list[str] = []
    by_run: dict[str, dict[str, str]] = {}
    for name, oid in refs.items():
        parsed = parse_ref(name)
        if parsed is None:
            if run is None:
                problems.append(f"{name}: not a ref uet knows (refs/uet/ layout)")
            continue
        by_run.setdefault(parsed.run, {})[name] = oid
    runs = sorted(by_run) if run is None else [query.resolve_run(repo, run)]
    for r in runs:
        found = fsck_run(repo, r, by_run.get(r, {}))
        # A live run may move between the ref listing and the ledger walk: what changed under
        # us is not a violation, so check again from a fresh listing (readers never lock).
        for _ in range(3):
            if not found:
                break
            fresh = query.run_refs(repo, r)
            fresh.update(query.for_each_ref(repo, [f"{ROOT}patches/{r}/",
                                                   candidate_prefix(r), inbox_prefix(r)]))
            if fresh == by_run.get(r, {}):
                break
            by_run[r] = fresh
            found = fsck_run(repo, r, fresh)
        problems.extend(found)
    return problems


def fsck_run(repo: Repo, run: str, refs: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    say = out.append
    tip = refs.get(query.ledger_ref(run))
    if tip is None:
        for name in sorted(refs):
            say(f"{run}: {name}: ref without a ledger (no {query.ledger_ref(run)})")
        return out
    if not has_object(repo, tip):
        say(f"{run}: ledger tip {tip} is missing")
        return out
    try:
        log = query.read_ledger(repo, run, tip=tip)
    except UetError as exc:  # a ledger commit below the tip is gone
        say(str(exc))
        return out

    # -- the history itself
    transitions: dict[str, list[query.Event]] = {}
    for e in log.transitions():
        transitions.setdefault(e.ws, []).append(e)  # type: ignore[arg-type]
    for ws, evs in transitions.items():
        prev: str | None = None
        attempt = 0
        for e in evs:
            if e.attempt is None or e.attempt < attempt:
                say(f"{run}: {ws}: ledger commit {e.oid[:12]}: attempt {e.attempt} after "
                    f"attempt {attempt}")
            attempt = max(attempt, e.attempt or 0)
            if e.from_ != prev:
                say(f"{run}: {ws}: ledger commit {e.oid[:12]} moves from {e.from_ or 'none'} "
                    f"but the previous state was {prev or 'none'}")
            elif e.to not in TRANSITIONS.get(prev, frozenset()):
                say(f"{run}: {ws}: ledger commit {e.oid[:12]}: illegal transition "
                    f"{prev or 'none'} -> {e.to}")
            prev = e.to

    # -- objects named by the ledger and the refs
    # One line per missing object, naming who refers to it. Objects the ledger keeps alive:
    # patches and candidates (through patch, state and integration refs) and the base. Not
    # those of workstreams whose refs `uet gc` removed: a later `git gc` may prune them.
    want = expected_refs(log)
    state_ws = {p.ws for p in map(parse_ref, refs) if p is not None and p.kind == "state"}
    records = {ws: query.ws_record(ws, evs) for ws, evs in transitions.items()}
    collected = {ws for ws, rec in records.items() if ws not in state_ws
                 and state_ref(rec.state, run, ws) not in want}
    missing: dict[str, list[str]] = {}
    for e in log.events:
        if e.ws in collected:
            continue
        for key in _KEPT_TRAILERS:
            value = e.trailers.get(key, "")
            if _OID_RE.match(value) and not has_object(repo, value):
                missing.setdefault(value, []).append(f"{key} of ledger commit {e.oid[:12]}")
    for name, oid in sorted(refs.items()):
        if not has_object(repo, oid):
            missing.setdefault(oid, []).insert(0, name)
    for oid, namers in missing.items():
        more = f" and {len(namers) - 2} more" if len(namers) > 2 else ""
        say(f"{run}: object {oid} is missing (named by {', '.join(namers[:2])}{more})")
    for path in _missing_tree_objects(repo, tip):
        say(f"{run}: ledger tip tree: {path} is missing")

    # -- state refs
    states: dict[str, list[tuple[str, str, str]]] = {}
    patches: dict[str, tuple[str, int, str]] = {}
    for name, oid in refs.items():
        p = parse_ref(name)
        if p is None:
            continue
        if p.kind == "state":
            states.setdefault(p.ws, []).append((p.state, name, oid))  # type: ignore[arg-type]
        elif p.kind == "patch":
            patches[name] = (p.ws, p.attempt, oid)  # type: ignore[assignment]
    for ws, rec in sorted(records.items()):
        found = states.get(ws, [])
        last = transitions[ws][-1]
        if not found:
            if ws not in collected:  # no `run: gc` removed it since
                say(f"{run}: {ws}: no state ref (the ledger says {rec.state}: "
                    f"refs/uet/{rec.state}/{run}/{ws})")
            continue
        if len(found) > 1:
            names = ", ".join(sorted(n for _, n, _ in found))
            say(f"{run}: {ws}: {len(found)} state refs: {names}")
            continue
        state, name, oid = found[0]
        if state != rec.state:
            say(f"{run}: {ws}: state ref {name} says {state} but the ledger's last transition "
                f"({last.oid[:12]}) says {rec.state}")
            continue
        expected = want.get(name) or state_target(rec, last.oid)
        if oid != expected:
            say(f"{run}: {ws}: {name} points to {oid[:12]}, the ledger says {expected[:12]}")
    for ws in sorted(set(states) - set(records)):
        for _, name, _ in states[ws]:
            say(f"{run}: {ws}: state ref {name} has no transition in the ledger")

    # -- patch refs
    recorded: dict[tuple[str, int], set[str]] = {}
    for ws, evs in transitions.items():
        for e in evs:
            if e.attempt is not None and e.patch:
                recorded.setdefault((ws, e.attempt), set()).add(e.patch)
    attempts = {ws: {e.attempt for e in evs} for ws, evs in transitions.items()}
    for name, (ws, n, oid) in sorted(patches.items()):
        if ws not in transitions:
            say(f"{run}: {name}: patch of a workstream the ledger does not know")
            continue
        if n not in attempts[ws]:
            say(f"{run}: {name}: attempt {n} of {ws} is not in the ledger")
        elif (ws, n) in recorded and oid not in recorded[(ws, n)]:
            say(f"{run}: {name} points to {oid[:12]}, the ledger recorded "
                f"{', '.join(sorted(x[:12] for x in recorded[(ws, n)]))}")
            continue  # one violation, one line
        if has_object(repo, oid):
            try:
                commit = get_commit(repo, oid)
            except MissingObject:
                say(f"{run}: {name} is not a commit")
                continue
            if len(commit.parents) != 1:
                say(f"{run}: {name}: a patch has one parent, this one has "
                    f"{len(commit.parents)}")
            else:
                ws_trailer = parse_trailers(commit.message).get("Uet-Workstream")
                if ws_trailer is not None and ws_trailer != ws:
                    say(f"{run}: {name}: the patch commit says Uet-Workstream {ws_trailer}")
    for ws, n in sorted(recorded):
        pref = f"{ROOT}patches/{run}/{ws}/{n}"
        if pref not in refs and pref in want:
            say(f"{run}: {ws}: attempt {n} has no patch ref {pref}")

    out.extend(_fsck_candidates(repo, run, log, refs,
                                want.get(query.integration_ref(run)) or log.base))
    out.extend(_fsck_inbox(repo, run, log, refs, recorded))

    # -- the integration ref
    chain = _fsck_integration(repo, run, log, refs, records, transitions)
    out.extend(chain)
    iref, recorded_tip = query.integration_ref(run), want.get(query.integration_ref(run))
    if not chain and recorded_tip and refs.get(iref) not in (None, recorded_tip):
        # A well-formed chain that is still not what the ledger recorded (a forged commit
        # carrying a committed workstream's trailers): land must never take it.
        say(f"{run}: {iref} points to {refs[iref][:12]}, the ledger recorded {recorded_tip[:12]} "
            f"(`uet fsck --repair {run}` resets it)")
    return out


CANDIDATE_DEPTH = 10_000  # a window is small: a longer chain is not a candidate's


def _fsck_candidates(repo: Repo, run: str, log: query.LedgerLog, refs: Mapping[str, str],
                     tip: str | None) -> list[str]:
    cands = {n: o for n, o in refs.items() if (p := parse_ref(n)) is not None
             and p.kind == "candidate"}
    if not cands:
        return []
    if log.finished:
        return [f"{run}: {name}: speculative candidate left after the run finished"
                for name in sorted(cands)]
    out: list[str] = []
    history: set[str] = set()
    if tip and has_object(repo, tip):
        for c in walk_commits(repo, tip, first_parent=True):
            history.add(c.oid)
            if c.oid == log.base:
                break
    for name, oid in sorted(cands.items()):
        if not has_object(repo, oid):
            continue  # said above (missing object)
        node: str | None = oid
        for _ in range(CANDIDATE_DEPTH):
            if node is None or node in history:
                break
            node = get_commit(repo, node).parent
        if node is None or node not in history:
            out.append(f"{run}: {name}: candidate {oid[:12]} is not built on the integration "
                       f"history (tip {str(tip)[:12]})")
    return out


def _fsck_inbox(repo: Repo, run: str, log: query.LedgerLog, refs: Mapping[str, str],
                recorded: Mapping[tuple[str, int], set[str]]) -> list[str]:
    inbox = {n: (p, o) for n, o in refs.items() if (p := parse_ref(n)) is not None
             and p.kind == "inbox"}
    if not inbox:
        return []
    out: list[str] = []
    try:
        planned = set(query.plan_deps(query.read_plan(repo, log)))
    except UetError:  # a missing plan blob: said above (ledger tip tree)
        planned = set()
    for name, (p, oid) in sorted(inbox.items()):
        ws, n = str(p.ws), int(p.attempt or 0)
        if planned and ws not in planned:
            out.append(f"{run}: {name}: inbox ref of a workstream the plan does not have")
        if not has_object(repo, oid):
            continue  # said above (missing object)
        try:
            commit = get_commit(repo, oid)
        except MissingObject:
            out.append(f"{run}: {name} is not a commit")
            continue
        trailers = parse_trailers(commit.message)
        for key, want in (("Uet-Run", run), ("Uet-Workstream", ws), ("Uet-Attempt", str(n))):
            have = trailers.get(key)
            if have != want:
                out.append(f"{run}: {name}: its commit {oid[:12]} says {key} "
                           f"{have or '(none)'}, the ref name says {want}")
        if (ws, n) in recorded and oid not in recorded[(ws, n)]:
            out.append(f"{run}: {name} points to {oid[:12]}, the ledger recorded attempt {n}'s "
                       f"patch {', '.join(sorted(x[:12] for x in recorded[(ws, n)]))} "
                       f"(an inbox ref never moves)")
    return out


def _missing_tree_objects(repo: Repo, commit: str) -> list[str]:
    try:
        root = tree_of(repo, commit)
    except MissingObject:
        return ["(tree)"]
    missing: list[str] = []
    stack = [("", root)]
    while stack:
        prefix, tree = stack.pop()
        for entry in list_tree(repo, tree):
            path = f"{prefix}{entry.name}"
            if not has_object(repo, entry.oid):
                missing.append(path)
            elif entry.kind == "tree":
                stack.append((f"{path}/", entry.oid))
    return missing


def _fsck_integration(
    repo: Repo, run: str, log: query.LedgerLog, refs: Mapping[str, str],
    records: Mapping[str, query.WsRecord], transitions: Mapping[str, list[query.Event]],
) -> list[str]:
    out: list[str] = []
    iref = query.integration_ref(run)
    tip = refs.get(iref)
    committed = {ws for ws, r in records.items() if r.state == "committed"}
    if tip is None:
        if committed and not log.run_events(GC_EVENT):
            out.append(f"{run}: {iref} is missing but "
                       f"{plural(len(committed), 'workstream is', 'workstreams are')} committed")
        return out
    base = log.base
    if base is None:
        out.append(f"{run}: the ledger records no base (Uet-Base trailer of `run: start`)")
        return out
    start, since = base, f"the base {base[:12]}"
    rebases = [e for e in log.run_events(REBASE_EVENT) if e.subject == REBASE_EVENT]
    # Workstreams a rebase skipped because their change already was in its onto: their work
    # is below the chain's start (the target's own commits), not on the chain.
    applied = {ws.strip() for e in rebases
               for ws in e.trailers.get(ALREADY_APPLIED, "").split(",") if ws.strip()}
    if rebases:
        last = rebases[-1]
        onto = last.trailers.get("Uet-Onto", "")
        if not _OID_RE.match(onto):
            out.append(f"{run}: ledger commit {last.oid[:12]} ({REBASE_EVENT}) has no valid "
                       f"Uet-Onto ({onto or 'none'})")
            return out
        start, since = onto, f"{onto[:12]}, where the rebase {last.oid[:12]} put it"
    if not has_object(repo, tip) or not has_object(repo, start):
        return out  # already reported as a missing object
    by_oid: dict[str, str] = {}
    for ws, evs in transitions.items():
        for e in evs:
            for oid in (e.candidate, e.patch):
                if oid:
                    by_oid.setdefault(oid, ws)
    chain: list[str] = []
    cur = tip
    limit = 100_000
    messages: dict[str, str] = {}
    while cur != start:
        try:
            commit = get_commit(repo, cur)
        except MissingObject:
            out.append(f"{run}: {iref}: commit {cur[:12]} on its chain is missing")
            return out
        if commit.parent is None or len(chain) > limit:
            out.append(f"{run}: {iref} ({tip[:12]}) does not descend first-parent from "
                       f"{since}")
            return out
        chain.append(cur)
        messages[cur] = commit.message
        cur = commit.parent
    chain.reverse()
    deps = query.plan_deps(query.read_plan(repo, log))
    position: dict[str, int] = {}
    for i, oid in enumerate(chain):
        ws = by_oid.get(oid) or parse_trailers(messages[oid]).get("Uet-Workstream")
        if ws is None:
            out.append(f"{run}: {iref}: commit {oid[:12]} is not a patch of this run")
            continue
        state = records[ws].state if ws in records else None
        if state == "rolled-back":
            continue  # what a rollback leaves on the integration ref is the engine's story
        if state != "committed":
            out.append(f"{run}: {iref}: commit {oid[:12]} is {ws}, which is "
                       f"{state or 'not in the ledger'}, not committed")
            continue
        if ws in position:
            out.append(f"{run}: {iref}: {ws} appears twice ({chain[position[ws]][:12]}, "
                       f"{oid[:12]})")
            continue
        position[ws] = i
    for ws in sorted(committed - set(position) - applied):
        out.append(f"{run}: {ws} is committed but not on {iref}")
    for ws, i in sorted(position.items(), key=lambda kv: kv[1]):
        for d in deps.get(ws, []):
            if d in position and position[d] > i:
                out.append(f"{run}: {iref}: {ws} comes before its dependency {d}")
            elif d not in position and d not in applied and ws in committed:
                out.append(f"{run}: {iref}: {ws} is committed but its dependency {d} is not")
    return out
