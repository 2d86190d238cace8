"""Start-up: a command imports only what it needs. `uet --help` imports no command module;
`uet status`, `log` and `runs` read no spec, so they import neither pydantic, yaml, the legacy
reader nor the run engine (each costs tens of ms on every call). `uet run` of JSON (or TOML)
workstreams imports no yaml: everything it imports comes before its first tool starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.e2e.helpers import run, run_ok, setup_repo
from uet_git.commands.run import execute_run
from uet_git.engine.events import NullObserver
from uet_git.engine.options import RunOptions
from uet_git.errors import UetError
from uet_git.gitrepo import Repo

HEAVY = ("pydantic", "yaml", "uet_git.spec.legacy", "uet_git.spec.models", "uet_git.engine.loop",
         "uet_git.commands.run")
_PROBE = """
import json, sys
from uet_git.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
sys.__stdout__.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def _modules(cwd: Path, *args: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = setup_repo(tmp_path_factory.mktemp("startup") / "r",
                      workstreams={"a": {"command": "echo a > a.txt"}})
    run_ok(path, "run", "--land", "never")
    return path


@pytest.mark.parametrize("args", [("--help",), ("status",), ("log",), ("runs",)])
def test_read_only_commands_import_no_spec_models_or_engine(repo: Path, args: tuple[str, ...]
                                                             ) -> None:
    loaded = _modules(repo, *args)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"uet {' '.join(args)} imported {heavy}"
    if args == ("--help",):
        assert not any(m.startswith("uet_git.cli.") for m in loaded - {"uet_git.cli.helptext"})
        assert "pygit2" not in loaded
        assert "click" not in loaded


def test_the_spec_models_alone_import_no_loader_yaml_or_legacy_reader() -> None:
    # e.g. `uet show` needs a tool's model, not the workstream file loaders
    code = ("import sys, uet_git.spec.models; "
            "print(sorted(m for m in sys.modules if m in ('yaml', 'uet_git.spec.legacy', "
            "'uet_git.spec.load')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_spec_models_build_no_validator_until_used() -> None:
    # Building ~15 validators at class creation was about half of importing spec.models;
    # `uet run` validates a workstream and a Config, `uet show` maybe one tool's model.
    code = ("import uet_git.spec.models as m; "
            "print(sorted(n for n, v in vars(m).items() if isinstance(v, type) "
            "and issubclass(v, m.BaseModel) and v.__pydantic_complete__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_local_dry_run_imports_no_cluster_converter_or_report(repo: Path) -> None:
    loaded = _modules(repo, "run", "--dry-run")
    assert "uet_git.commands.run" in loaded
    unneeded = sorted(m for m in loaded if m.split(".")[0] in ("dask", "distributed")
                      or m in ("uet_git.spec.convert", "uet_git.cli.htmlreport",
                               "uet_git.cli.reportdata"))
    assert unneeded == []


# The Dask back-end: the coordinator's executor, `uet serve` (an HTTP server) and the jobs
# the workers run; a run on local threads never needs them.
DASK_BACKEND = ("uet_git.commands.executor", "uet_git.commands.serve", "uet_git.engine.executor",
                "uet_git.engine.remotejob", "uet_git.engine.remoteverify",
                "uet_git.gitrepo.httpbackend", "uet_git.gitrepo.mirror", "http.server")


def test_the_run_command_imports_no_dask_back_end() -> None:
    code = ("import sys, uet_git.cli.run, uet_git.cli.resume, uet_git.cli.retry; "
            f"print(sorted(m for m in {DASK_BACKEND!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_landing_imports_no_run_loop_or_verification_queue() -> None:
    # `uet land` (and its --rebase, which re-verifies on a pool of its own) runs no loop
    code = ("import sys, uet_git.cli.land, uet_git.cli.rollback; print(sorted(m for m in "
            "('uet_git.engine.loop', 'uet_git.engine.queue', 'uet_git.engine.integrator', "
            "'uet_git.engine.scheduler') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_a_run_on_a_scheduler_reaches_the_back_end_only_through_its_slot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # outside the uet command nothing loads the back-end: one line, nothing recorded
    path = setup_repo(tmp_path / "r", workstreams={"a": {"command": "true"}})
    monkeypatch.setenv("UET_EXECUTOR", "dask://127.0.0.1:9")
    with pytest.raises(UetError, match="started by the uet command"):
        execute_run(Repo.open(path), RunOptions(land="never"), NullObserver())
    assert git(path, "for-each-ref", "refs/uet/") == ""
    # the command gives it: the address is checked there (no TLS off loopback, ...)
    monkeypatch.setenv("UET_EXECUTOR", "dask://192.0.2.1:9")
    proc = run(path, "run", "--land", "never")
    assert proc.returncode == 2 and "192.0.2.1" in proc.stderr, proc.stderr


def test_a_run_of_json_workstreams_imports_no_yaml_and_no_cluster(tmp_path: Path) -> None:
    path = setup_repo(tmp_path / "r")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.json").write_text(json.dumps({"id": "a", "tool": "shell",
                                           "command": "echo a > a.txt"}))
    loaded = _modules(path, "run", str(ws), "--land", "never", "--jobs", "1")
    assert "uet_git.engine.loop" in loaded  # the run happened in this process
    unneeded = sorted(m for m in loaded if m.split(".")[0] in ("yaml", "dask", "distributed")
                      or m in DASK_BACKEND)
    assert unneeded == []
    assert "a.txt" in git(path, "ls-tree", "--name-only", "-r", _integration_ref(path)).split()


def test_a_run_of_plain_input_builds_no_pydantic_validator(tmp_path: Path) -> None:
    # Building them (and pydantic's plugin discovery, which imports importlib.metadata and
    # scans every installed distribution) was most of reading uet.toml and the workstreams.
    path = setup_repo(tmp_path / "r", config='[run]\njobs = 1\n[verify]\nwindow = 1\n'
                      '[hooks]\npre-merge = ["true"]\n')
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.json").write_text(json.dumps({"id": "a", "command": "echo a > a.txt",
                                           "timeout": 60, "scope": {"allow": ["a.txt"]}}))
    loaded = _modules(path, "run", str(ws), "--land", "never")
    assert "uet_git.engine.loop" in loaded
    assert "pydantic.plugin._loader" not in loaded
    assert "a.txt" in git(path, "ls-tree", "--name-only", "-r", _integration_ref(path)).split()


def test_a_run_still_reads_yaml_workstreams(tmp_path: Path) -> None:
    # the YAML loader is built on first use; its duplicate-key refusal must survive that
    path = setup_repo(tmp_path / "r")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "a.yaml").write_text("id: a\ntool: shell\ncommand: echo a > a.txt\n")
    (ws / "b.yaml").write_text("id: b\ntool: shell\ncommand: 'true'\ncommand: 'false'\n")
    proc = run(path, "run", str(ws), "--land", "never")
    assert proc.returncode == 2
    assert "b.yaml: line 4 column 1: invalid YAML: duplicate key 'command'" in proc.stderr
    (ws / "b.yaml").unlink()
    run_ok(path, "run", str(ws), "--land", "never")
    assert "a.txt" in git(path, "ls-tree", "--name-only", "-r", _integration_ref(path)).split()


def _integration_ref(path: Path) -> str:
    refs = git(path, "for-each-ref", "--format=%(refname)", "refs/uet/integration/").split()
    assert len(refs) == 1
    return refs[0]
