"""The verification queue's candidates in flight (``engine/queue.py``): what one patch of the
queue is (``Item`` and its status), one judging handed to a verifier thread (``Job``, with its
``Stop``), and the refs that keep candidates alive while they wait (``CandidateRefs``).

Representation (README, "The verification queue"): ``refs/uet/candidates/RUN/N`` (N counts up
within a process) points to each candidate made and not yet committed or discarded; it keeps
the candidate's objects alive while it waits (a worktree HEAD only does while it is checked
out) and shows the speculative window with ``git for-each-ref refs/uet/candidates/``. The refs
are deleted when their candidate is committed or discarded, and all of them when the run stops
or starts again (a resume after kill -9). ``uet fsck`` checks that a finished run has none and
that each one is built on the integration history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from uet_git.engine.verify import Verdict, empty_candidate, make_candidate
from uet_git.gitrepo.refs import for_each_ref
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.keepalive import write_pinned
from uet_git.ledger.layout import candidate_prefix, candidate_ref

NEW = "new"  # no candidate yet
BUILT = "built"  # candidate made, not judged
RUNNING = "running"  # being judged
PASSED = "passed"
SUSPECT = "suspect"  # failed on the chain: out of it; its flake check (tip + patch) decides
DEFERRED = "deferred"  # conflicts with a speculative candidate: out of the chain for now
OUT_OF_CHAIN = (SUSPECT, DEFERRED)


class Stop(threading.Event):
    """A judging's cancel: set for this judging alone (its candidate was discarded), or the
    run's (Ctrl-C). Commands poll ``is_set``."""

    def __init__(self, run: threading.Event) -> None:
        super().__init__()
        self.run = run

    def is_set(self) -> bool:
        return super().is_set() or self.run.is_set()


@dataclass
class Item:
    ws: str
    attempt: int
    patch: str
    candidate: str | None = None
    parent: str | None = None
    ref: str | None = None
    status: str = NEW
    gen: int = 0  # bumped on every rebuild: a verdict of an older generation is stale
    verdict: Verdict | None = None
    failures: list[Verdict] = field(default_factory=list)
    ahead: list[str] = field(default_factory=list)  # a suspect: the patches its failure held
    flake_running: bool = False
    started: float = 0.0
    seconds: float = 0.0
    recorded: str | None = None  # candidate the ledger holds (applied/verified) at seeding
    # The candidate its worker judged (the patch on the queue's tail then, engine/handed):
    # the queue's own when it builds on that same tail.
    offered: str | None = None
    # Patches handed to workers before this one and not yet in the queue: its worker judged
    # it on a tail holding them, so it is not built before they arrive (until hold_until).
    waits_for: list[str] = field(default_factory=list)
    hold_until: float = 0.0
    # Its worker queued it this run and the queue recorded nothing for it since: the ledger
    # holds (or is writing) ``queued``, and the queue need not wait for that write to know it.
    fresh: bool = False


@dataclass(frozen=True)
class Job:
    """One judging to run on a verifier thread."""

    ws: str
    gen: int
    kind: str  # "chain" | "flake" | "batch"
    attempt: int
    patch: str
    candidate: str
    parent: str
    stop: threading.Event | None = field(default=None, compare=False, hash=False)
    # kind "batch": (ws, gen, attempt, patch) of each patch judged on ``candidate`` (the last
    # one's), and ``span``: the chain positions from the head the candidate holds.
    members: tuple[tuple[str, int, int, str], ...] = ()
    span: int = 1


@dataclass
class Progress:
    committed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)


class CandidateRefs:
    """The candidate refs of one run (see the module doc); ``n``: the last number used."""

    def __init__(self, repo: Repo, run: str) -> None:
        self.repo = repo
        self.run = run
        self.n = 0

    def clear(self) -> None:
        """Delete every candidate ref of the run (those a crashed process left, or ours)."""
        left = for_each_ref(self.repo, candidate_prefix(self.run))
        if left:
            tx = self.repo.transaction()
            for name, oid in left.items():
                tx.delete(name, oid)
            tx.commit()
            nums = [int(n.rsplit("/", 1)[1]) for n in left]
            self.n = max(self.n, *nums)

    def set(self, item: Item, candidate: str | None) -> None:
        """``item``'s ref names ``candidate`` (None: it has none)."""
        if candidate is None and item.ref is None:
            return  # nothing to delete: no transaction (a git process) for nothing
        tx = self.repo.transaction()
        if item.ref is not None and item.candidate is not None:
            tx.delete(item.ref, item.candidate)
        new = None
        if candidate is not None:
            self.n += 1
            new = candidate_ref(self.run, self.n)
            tx.create(new, candidate)
        tx.commit()  # a failed one changed nothing: item.ref still names what exists
        item.ref = new

    def pin(self, item: Item, cand: str, base: str) -> str:
        """``cand`` (``item``'s patch on ``base``, made in memory) kept by its candidate ref,
        complete on disk: a concurrent ``git gc --prune=now`` may take a commit no ref names
        yet, and then it is made again (same merge, same tree). Returns the kept commit."""
        made = [cand]

        def write() -> str:
            if made:
                return made.pop()
            again = make_candidate(self.repo, item.patch, base)
            return again.commit or empty_candidate(self.repo, item.patch, base)

        def pin(oid: str) -> None:
            self.set(item, oid)
            item.candidate = oid  # what the ref now names (a retry replaces it)

        return write_pinned(self.repo, write, pin, base=base, what=f"{item.ws}: candidate")
