"""A worker's slot is not held for the ledger's bookkeeping after acceptance: ``queued`` is
queued for the writer and the worker returns before it is durable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.engine.verifykit import kit
from uet_git.engine.pipeline import run_workstream
from uet_git.spec.models import Config


def test_the_worker_returns_while_the_writer_is_busy_and_queued_follows(tmp_path: Path):
    flag = tmp_path / "acceptance-started"
    spec = {"w": {"command": "echo w > w.txt",
                  "acceptance": [f"touch {flag} && sleep 0.2 && test -f w.txt"]}}
    config = Config.model_validate({"sandbox": {"mode": "none"}})
    with kit(tmp_path, spec, config=config) as k:
        order: list[str] = []
        release = threading.Event()

        def hold_the_writer() -> None:
            # Once acceptance runs (created+validated are durable), keep the ledger's writer
            # busy, as another thread's fsync would, until the worker returned (or 3 s).
            while not flag.exists():
                time.sleep(0.01)
            with k.ledger._mutex:
                release.wait(3)
                order.append("writer free")

        holder = threading.Thread(target=hold_the_writer)
        holder.start()
        out = run_workstream(k.ctx, "w", worker=0, base=k.ledger.base, attempt=1)
        order.append("worker returned")
        release.set()
        holder.join()
        assert out.state == "queued"
        assert order == ["worker returned", "writer free"]
        assert k.state("w") == "queued"  # a reader waits for what is queued
        assert [t[2] for t in k.observer.transitions] == ["created", "validated", "queued"]
