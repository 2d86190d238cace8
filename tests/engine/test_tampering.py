"""Tools that change the repository outside their worktree (refs, config): unsandboxed, the
change is detected, the workstream quarantined ``tampered`` and the change put back; in the
sandbox the tool's git commands cannot write them at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import git, make_repo
from tests.engine.test_loop import Recorder, engine_over, shell
from uet_git.commands.run import execute_run
from uet_git.engine.options import RunOptions
from uet_git.gitrepo.repo import Repo
from uet_git.ledger import query
from uet_git.ledger.writer import Ledger
from uet_git.spec.models import Config
from uet_git.workers.sandbox import available

FORGE_MAIN = ("git update-ref refs/heads/main "
              "$(git commit-tree -p HEAD -m forged 'HEAD^{tree}')")
PLANT_HOOKS = "git config core.hooksPath /tmp/x"
UNSANDBOXED = Config.model_validate({"sandbox": {"mode": "none"}})


def last_summary(ledger: Ledger, ws: str) -> str:
    return query.history(ledger.repo, ledger.run, ws)[-1].summary


def config_of(path: Path) -> str:
    return git(path, "config", "--list", "--local")


def test_unsandboxed_tampering_is_quarantined_and_put_back(tmp_path: Path) -> None:
    wss = [shell("evil", f"{FORGE_MAIN} && {PLANT_HOOKS} && echo x > x.txt"),
           shell("after", "echo y > y.txt", deps=["evil"])]
    with engine_over(tmp_path, wss, config=UNSANDBOXED, jobs=1) as (engine, ledger):
        path = engine.ctx.repo.workdir
        main, config = git(path, "rev-parse", "main"), config_of(path)
        engine.run()
        rec = ledger.states()["evil"]
        assert (rec.state, rec.reason) == ("quarantined", "tampered")
        assert ledger.states()["after"].state == "blocked"
        assert git(path, "rev-parse", "main") == main
        assert config_of(path) == config
        assert git(path, "config", "core.hooksPath", check=False) == ""
        summary = last_summary(ledger, "evil")
        assert f"ref refs/heads/main moved {main} -> " in summary
        assert "core.hookspath set to '/tmp/x'" in summary.lower()
        evidence = git(path, "show", f"{ledger.tip}:" + _evidence_path(path, ledger.tip))
        assert "put back:" in evidence and "refs/heads/main" in evidence


def _evidence_path(path: Path, tip: str) -> str:
    names = git(path, "ls-tree", "-r", "--name-only", tip).splitlines()
    return next(n for n in names if n.endswith("tampering.txt"))


def test_a_change_is_blamed_on_every_tool_running_meanwhile_only(tmp_path: Path) -> None:
    wss = [shell("quick", "echo q > q.txt"),
           shell("evil", f"sleep 1.5 && {FORGE_MAIN} && echo e > e.txt"),
           shell("slow", "sleep 2.5 && echo s > s.txt")]
    with engine_over(tmp_path, wss, config=UNSANDBOXED, jobs=3) as (engine, ledger):
        path = engine.ctx.repo.workdir
        main = git(path, "rev-parse", "main")
        engine.run()
        got = {ws: (r.state, r.reason) for ws, r in ledger.states().items()}
        assert got == {"quick": ("committed", None), "evil": ("quarantined", "tampered"),
                       "slow": ("quarantined", "tampered")}
        assert "it ran together with slow" in last_summary(ledger, "evil")
        assert git(path, "rev-parse", "main") == main


def test_continuous_landing_is_not_taken_for_tampering(tmp_path: Path) -> None:
    path = make_repo(tmp_path / "repo", {
        "uet.toml": '[sandbox]\nmode = "none"\n',
        "workstreams/a.yaml": "id: a\ntool: shell\ncommand: echo a > a.txt\n",
        "workstreams/b.yaml": "id: b\ntool: shell\ncommand: sleep 1.5 && echo b > b.txt\n",
    })
    seen = Recorder()
    result = execute_run(Repo.open(path), RunOptions(jobs=2, land="continuous"), seen)
    assert result.exit_code == 0, result.message
    assert result.counts == {"committed": 2}
    assert (path / "b.txt").read_text() == "b\n"


@pytest.mark.skipif(available() is not None, reason=f"bwrap unusable: {available()}")
def test_in_the_sandbox_the_tools_git_cannot_write_refs_or_config(tmp_path: Path) -> None:
    tool = f"{FORGE_MAIN} 2> forge.err; {PLANT_HOOKS} 2> config.err; cat forge.err config.err"
    with engine_over(tmp_path, [shell("evil", tool)], jobs=1) as (engine, ledger):
        assert engine.ctx.sandboxed
        path = engine.ctx.repo.workdir
        main, config = git(path, "rev-parse", "main"), config_of(path)
        engine.run()
        rec = ledger.states()["evil"]
        assert rec.state == "committed"  # its own files (the two logs) are its patch
        tip = ledger.integration_tip()
        assert "Read-only file system" in git(path, "show", f"{tip}:forge.err")
        assert git(path, "show", f"{tip}:config.err") != ""
        assert git(path, "rev-parse", "main") == main
        assert config_of(path) == config


def test_bwrap_missing_is_said_once_at_run_start(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = make_repo(tmp_path / "repo", {
        "workstreams/a.yaml": "id: a\ntool: shell\ncommand: echo a > a.txt\n"})
    monkeypatch.setattr("uet_git.workers.sandbox._checked", ["bwrap is not installed"])
    seen = Recorder()
    execute_run(Repo.open(path), RunOptions(jobs=1, land="never"), seen)
    said = [m for m in seen.messages if m.startswith("sandbox:")]
    assert said == ["sandbox: bwrap unavailable (bwrap is not installed); tools run "
                    "unsandboxed, tampering is detected after each tool"]


@pytest.mark.skipif(available() is not None, reason=f"bwrap unusable: {available()}")
def test_a_writable_path_holding_the_repository_gets_the_full_check(tmp_path: Path) -> None:
    opened = Config.model_validate({"sandbox": {"writable": [str(tmp_path)]}})
    with engine_over(tmp_path, [shell("evil", f"{FORGE_MAIN} && echo x > x.txt")],
                     config=opened, jobs=1) as (engine, ledger):
        assert engine.ctx.sandboxed and not engine.ctx.guard.sandboxed
        path = engine.ctx.repo.workdir
        main = git(path, "rev-parse", "main")
        engine.run()
        rec = ledger.states()["evil"]
        assert (rec.state, rec.reason) == ("quarantined", "tampered")
        assert git(path, "rev-parse", "main") == main
