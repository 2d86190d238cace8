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
# One new interpreter runs ``uet ARGS`` in each given directory in turn and prints, after
# each, its exit code and every module it has imported by then.
_PROBE = """
import json, os, sys
from uet_git.cli import main
for cwd, args in json.loads(sys.argv[1]):
    os.chdir(cwd)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    sys.__stdout__.write("\\nMODULES " + json.dumps([code, sorted(sys.modules)]) + "\\n")
"""


def _modules_after(*steps: tuple[Path, tuple[str, ...]]) -> list[tuple[object, set[str]]]:
    """``(exit code, modules imported so far)`` after each ``(cwd, args)`` step of one new
    interpreter. A module a step imports stays imported: a step's set holds the earlier
    steps' modules too, so what a later step is checked not to import, an earlier one did not
    import either."""
    proc = subprocess.run([sys.executable, "-c", _PROBE,
                           json.dumps([(str(cwd), list(args)) for cwd, args in steps])],
                          capture_output=True, text=True, timeout=120)
    out = [json.loads(ln.removeprefix("MODULES ")) for ln in proc.stdout.splitlines()
           if ln.startswith("MODULES ")]
    assert len(out) == len(steps), proc.stdout + proc.stderr
    return [(code, set(modules)) for code, modules in out]


def _modules(cwd: Path, *args: str) -> set[str]:
    return _modules_after((cwd, args))[0][1]


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


@pytest.fixture(scope="module")
def models_alone() -> dict[str, list[str]]:
    # One new interpreter imports uet_git.spec.models and nothing else, then looks at what it
    # loaded and at the models (reading __pydantic_complete__ builds nothing).
    code = ("import json, sys, uet_git.spec.models as m; loaded = sorted(x for x in "
            "('yaml', 'uet_git.spec.legacy', 'uet_git.spec.load') if x in sys.modules); "
            "print(json.dumps({'loaded': loaded, 'complete': sorted(n for n, v in "
            "vars(m).items() if isinstance(v, type) and issubclass(v, m.BaseModel) "
            "and v.__pydantic_complete__)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    result: dict[str, list[str]] = json.loads(out)
    return result


def test_the_spec_models_alone_import_no_loader_yaml_or_legacy_reader(
        models_alone: dict[str, list[str]]) -> None:
    # e.g. `uet show` needs a tool's model, not the workstream file loaders
    assert models_alone["loaded"] == []


def test_the_spec_models_build_no_validator_until_used(models_alone: dict[str, list[str]]
                                                       ) -> None:
    # Building ~15 validators at class creation was about half of importing spec.models;
    # `uet run` validates a workstream and a Config, `uet show` maybe one tool's model.
    assert models_alone["complete"] == []


# The Dask back-end: the coordinator's executor, `uet serve` (an HTTP server) and the jobs
# the workers run; a run on local threads never needs them.
DASK_BACKEND = ("uet_git.commands.executor", "uet_git.commands.serve", "uet_git.engine.executor",
                "uet_git.engine.remotejob", "uet_git.engine.remoteverify",
                "uet_git.gitrepo.httpbackend", "uet_git.gitrepo.mirror", "http.server")


def test_the_run_command_imports_no_dask_back_end(
        local_runs: dict[str, tuple[Path, object, set[str]]]) -> None:
    # after the local runs, `uet resume --help` and `uet retry --help` loaded those commands
    _, code, loaded = local_runs["retry"]
    assert code == 0
    assert {"uet_git.cli.run", "uet_git.cli.resume", "uet_git.cli.retry"} <= loaded
    assert sorted(m for m in DASK_BACKEND if m in loaded) == []


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


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory, repo: Path
               ) -> dict[str, tuple[Path, object, set[str]]]:
    """Three `uet run`s in one new interpreter, each checked for what it must not import: of
    JSON workstreams with no uet.toml, of plain input with one, then a dry run of the YAML
    workstreams of ``repo``. Those that must import no yaml come before the one that does.
    Then the other commands that run workstreams (resume, retry) are loaded."""
    base = tmp_path_factory.mktemp("local-runs")
    json_repo = setup_repo(base / "json")
    (base / "json-ws").mkdir()
    (base / "json-ws" / "a.json").write_text(json.dumps({"id": "a", "tool": "shell",
                                                         "command": "echo a > a.txt"}))
    plain_repo = setup_repo(base / "plain", config='[run]\njobs = 1\n[verify]\nwindow = 1\n'
                            '[hooks]\npre-merge = ["true"]\n')
    (base / "plain-ws").mkdir()
    (base / "plain-ws" / "a.json").write_text(json.dumps({
        "id": "a", "command": "echo a > a.txt", "timeout": 60, "scope": {"allow": ["a.txt"]}}))
    steps = {"json": (json_repo, ("run", str(base / "json-ws"), "--land", "never", "--jobs", "1")),
             "plain": (plain_repo, ("run", str(base / "plain-ws"), "--land", "never")),
             "dry-run": (repo, ("run", "--dry-run")),
             "resume": (repo, ("resume", "--help")), "retry": (repo, ("retry", "--help"))}
    after = _modules_after(*steps.values())
    return {name: (cwd, code, loaded)
            for (name, (cwd, _)), (code, loaded) in zip(steps.items(), after, strict=True)}


def test_a_local_dry_run_imports_no_cluster_converter_or_report(
        local_runs: dict[str, tuple[Path, object, set[str]]]) -> None:
    _, code, loaded = local_runs["dry-run"]
    assert code == 0 and "uet_git.commands.run" in loaded
    unneeded = sorted(m for m in loaded if m.split(".")[0] in ("dask", "distributed")
                      or m in ("uet_git.spec.convert", "uet_git.cli.htmlreport",
                               "uet_git.cli.reportdata"))
    assert unneeded == []


def test_a_run_of_json_workstreams_imports_no_yaml_and_no_cluster(
        local_runs: dict[str, tuple[Path, object, set[str]]]) -> None:
    path, _, loaded = local_runs["json"]
    assert "uet_git.engine.loop" in loaded  # the run happened in this process
    unneeded = sorted(m for m in loaded if m.split(".")[0] in ("yaml", "dask", "distributed")
                      or m in DASK_BACKEND)
    assert unneeded == []
    assert "a.txt" in git(path, "ls-tree", "--name-only", "-r", _integration_ref(path)).split()


def test_a_run_of_plain_input_builds_no_pydantic_validator(
        local_runs: dict[str, tuple[Path, object, set[str]]]) -> None:
    # Building them (and pydantic's plugin discovery, which imports importlib.metadata and
    # scans every installed distribution) was most of reading uet.toml and the workstreams.
    path, _, loaded = local_runs["plain"]
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
