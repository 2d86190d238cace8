"""Shell completion of run ids and workstream ids (`uet completion bash|zsh|fish` prints the
script; click's completion protocol, ``_UET_COMPLETE=bash_complete``, calls these).

Cheap on purpose, since the shell waits for them on every TAB: run ids are the names under
``refs/uet/ledger/`` (one ``for-each-ref``); workstream ids are the run's state refs plus the
nodes of the ``plan.json`` in its ledger tip's tree (one blob read), never the whole ledger.
(``uet run --only`` completes the workstream files' ids: ``cli/completespec.py``, apart so
that `uet status` does not import the spec loader.)
The run is the one already on the command line (RUN or --run), else the latest. Any failure
(not a repository, no runs) completes nothing: completion never prints an error."""

from __future__ import annotations

import json
import os

import click
from click.shell_completion import CompletionItem

from uet_git.gitrepo import Repo
from uet_git.ledger import query
from uet_git.ledger.layout import ledger_ref
from uet_git.ledger.log import PLAN_PATH

RUN_PARAMS = ("run", "run_arg", "run_opt")


def _repo() -> Repo | None:
    try:
        return Repo.open(".", bare_ok=True)
    except Exception:  # not a repository: nothing to complete
        return None


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str
                 ) -> list[CompletionItem]:
    repo = _repo()
    if repo is None:
        return []
    try:
        ids = query.run_ids(repo)
    except Exception:  # completion never fails loudly
        return []
    # Newest first: the run one usually wants.
    return [CompletionItem(r) for r in reversed(ids) if r.startswith(incomplete)]


def workstream_ids(repo: Repo, run: str) -> list[str]:
    """The run's workstreams: plan order first, then any with a state ref the plan lacks."""
    refs = query.run_refs(repo, run)
    out: list[str] = []
    tip = refs.get(ledger_ref(run))
    if tip is not None:
        data = query.read_tip_blob(repo, tip, PLAN_PATH)
        try:
            plan = json.loads(data) if data else None
        except ValueError:
            plan = None
        out = query.planned(plan if isinstance(plan, dict) else None)
    out += sorted(ws for ws in query.state_refs_of(refs, run) if ws not in out)
    return out


def run_on_line(repo: Repo) -> str | None:
    """A run id typed on the command line being completed. Click parses what comes before
    the word being completed, but an option still waiting for its value (``uet log RUN --ws
    <TAB>``) stops that parse before RUN is read, so the words are looked at too (every
    shell's script passes them as ``COMP_WORDS``)."""
    ids = set(query.run_ids(repo))
    words = os.environ.get("COMP_WORDS", "").split()
    return next((w for w in reversed(words) if w in ids), None)


def complete_ws(ctx: click.Context, param: click.Parameter, incomplete: str
                ) -> list[CompletionItem]:
    repo = _repo()
    if repo is None:
        return []
    try:
        given = next((ctx.params[p] for p in RUN_PARAMS if ctx.params.get(p)), None)
        run = query.resolve_run(repo, given or run_on_line(repo))
        ids = workstream_ids(repo, run)
    except Exception:  # no runs, an unknown run: nothing to complete
        return []
    return [CompletionItem(ws) for ws in ids if ws.startswith(incomplete)]


def complete_ws_list(ctx: click.Context, param: click.Parameter, incomplete: str
                     ) -> list[CompletionItem]:
    """``--only a,b,<TAB>``: the last comma-separated part completes, the ones before stay
    (and are not offered again)."""
    head, _, last = incomplete.rpartition(",")
    given = set(head.split(",")) if head else set()
    prefix = f"{head}," if head else ""
    return [CompletionItem(prefix + item.value) for item in complete_ws(ctx, param, last)
            if item.value not in given]
