"""A run's integrator side without the CLI or the worker threads: a real repository, a real
ledger, a real worktree pool, and patches written as commits, recorded up to ``queued``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import git, make_repo
from uet_git.engine.context import RunContext
from uet_git.engine.events import NullObserver
from uet_git.gitrepo.objects import build_tree, make_commit
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger
from uet_git.plan.dag import build_plan
from uet_git.spec.models import Config, Workstream
from uet_git.workers.pool import WorktreePool


class Recorder(NullObserver):
    """Keeps what the engine said."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.transitions: list[tuple[str, str | None, str]] = []

    def message(self, text: str, **fields: Any) -> None:
        self.messages.append(text)

    def transition(self, ws: str, frm: str | None, to: str, *, attempt: int = 1,
                   reason: str | None = None, detail: str = "") -> None:
        self.transitions.append((ws, frm, to))


@dataclass
class Kit:
    path: Path
    repo: Repo
    ctx: RunContext
    observer: Recorder
    patches: dict[str, str] = field(default_factory=dict)

    @property
    def ledger(self) -> Ledger:
        return self.ctx.ledger

    def queue(self, ws: str, files: Mapping[str, str | None], *, parent: str | None = None
              ) -> str:
        """A patch of ``ws`` (``files`` changed on ``parent``, default the run's base),
        recorded created -> validated -> queued; returns the patch commit."""
        parent = parent or self.ledger.base
        tree = build_tree(self.repo, parent, {k: None if v is None else v.encode()
                                              for k, v in files.items()})
        msg = f"{ws}\n\nUet-Workstream: {ws}\nUet-Run: {self.ledger.run}\n"
        patch = make_commit(self.repo, tree, [parent], msg)
        for to in ("created", "validated", "queued"):
            self.ledger.record(ws, to, attempt=1, patch=patch if to == "created" else None)
        self.patches[ws] = patch
        return patch

    def state(self, ws: str) -> str:
        rec = self.ledger.state(ws)
        assert rec is not None
        return str(rec.state)


def workstreams(specs: Mapping[str, Mapping[str, Any]]) -> list[Workstream]:
    return [Workstream.model_validate({"id": ws, "command": "true", **spec})
            for ws, spec in specs.items()]


def plan_json(wss: list[Workstream]) -> dict[str, Any]:
    """What plan.json holds for a run of ``wss`` (the workstreams themselves included)."""
    return {"workstreams": [{**w.model_dump(mode="json"), "source": None} for w in wss],
            "selected": [w.id for w in wss]}


@contextmanager
def kit(tmp_path: Path, specs: Mapping[str, Mapping[str, Any]], *,
        files: Mapping[str, str] | None = None, config: Config | None = None,
        executable: tuple[str, ...] = ()) -> Iterator[Kit]:
    """A repository with ``files`` (``executable`` ones chmod +x) in its first commit, a run
    of ``specs`` on it (its ledger open), and the context the integrator works in."""
    path = make_repo(tmp_path / "repo", dict(files or {"README.md": "hello\n"}))
    if executable:
        for name in executable:
            (path / name).chmod(0o755)
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "executable")
    repo = Repo.open(path)
    base = git(path, "rev-parse", "HEAD")
    wss = workstreams(specs)
    plan = build_plan(wss)
    observer = Recorder()
    pool = WorktreePool(repo, root=tmp_path / "worktrees", size=2)
    with Ledger.create(repo, base=base, target="main", plan=plan_json(wss)) as ledger:
        ctx = RunContext(repo=repo, ledger=ledger, config=config or Config(), plan=plan,
                         pool=pool, observer=observer, log_root=tmp_path / "logs",
                         target="main")
        try:
            yield Kit(path, repo, ctx, observer)
        finally:
            pool.close(remove=True)
