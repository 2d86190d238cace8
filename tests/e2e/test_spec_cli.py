"""`uet init`, `uet validate`, `uet schema` and `uet convert`, run as the real command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, uet
from uet_git.cli.init import EXAMPLE_YAML, UET_TOML
from uet_git.spec.load import load_config, samples_dir
from uet_git.spec.models import Config, Workstream


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def assert_clean_failure(proc, code: int = 2) -> None:  # type: ignore[no-untyped-def]
    """Exit code as expected, no traceback, every line printable."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out and "internal error" not in out, out
    for line in out.splitlines():
        assert line.isprintable(), repr(line)


# -- init ------------------------------------------------------------------------------------


def test_init_writes_both_files_at_repo_root_and_they_validate(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    sub = repo / "deep" / "er"
    sub.mkdir(parents=True)
    proc = uet("init", cwd=sub)
    assert proc.returncode == 0, proc.stderr
    assert (repo / "uet.toml").read_text() == UET_TOML
    assert (repo / "workstreams" / "example.yaml").read_text() == EXAMPLE_YAML
    assert not (sub / "uet.toml").exists()
    # every section is present and the values are the defaults
    for section in ("[run]", "[worktree]", "[tools.mytool]", "[hooks]", "[verify]", "[breaker]"):
        assert section in UET_TOML
    assert load_config(repo) == Config()
    proc = uet("validate", cwd=sub)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("ok: 1 workstream in 1 wave, 0 errors")
    # uet init touched nothing in git
    assert git(repo, "status", "--porcelain").splitlines() == ["?? uet.toml", "?? workstreams/"]


@pytest.mark.parametrize("existing", ["uet.toml", "workstreams/example.yaml"])
def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path, existing: str) -> None:
    repo = make_repo(tmp_path / "repo")
    target = repo / existing
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("mine\n")
    proc = uet("init", cwd=repo)
    assert_clean_failure(proc)
    assert lines_of(proc.stderr) == [f"uet: {existing}: already exists; not overwriting anything"]
    assert target.read_text() == "mine\n"
    other = {"uet.toml", "workstreams/example.yaml"} - {existing}
    assert not (repo / other.pop()).exists()


def test_init_outside_git_uses_cwd(tmp_path: Path) -> None:
    proc = uet("init", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "uet.toml").is_file() and (tmp_path / "workstreams/example.yaml").is_file()


# -- validate --------------------------------------------------------------------------------


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_validate_reports_every_error_at_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    ws = repo / "workstreams"
    write(ws / "a.yaml", "id: a\ntool: shell\ncommand: 'true'\ndepends_on: [b]\n")
    write(ws / "b.yaml", "id: b\ntool: shell\ncommand: 'true'\ndepends_on: [a]\n")  # cycle
    write(ws / "c.yaml", "id: c\ntool: shell\ncommand: 'true'\ndepends_on: [ghost]\n")
    write(ws / "d.yaml", "id: d\ntool: shell\ncommand: 'true'\ndepends_on: [d]\n")
    write(ws / "broken.yaml", "id: x\n  bad: [\n")
    write(ws / "types.json", '{"id": "t", "timeout": -1, "scope": {"allow": ["../up"]}}')
    write(ws / "tool.yaml", "id: no-exe\ntool: shell\ncommand: surely-not-installed-uet-xyz -v\n")
    proc = uet("validate", cwd=repo)
    assert_clean_failure(proc)
    out = proc.stdout
    expected = [
        "workstreams/broken.yaml: line 2 column 6: invalid YAML",
        "workstreams/types.json:t: scope.allow[0]: '../up': '..' component",
        "workstreams/types.json:t: timeout: Input should be greater than 0",
        "ghost",  # unknown dependency, named by the planner
        "a -> b -> a",  # the cycle itself
        "d",
        "workstreams/tool.yaml:no-exe: tool: executable 'surely-not-installed-uet-xyz' not found",
    ]
    for piece in expected:
        assert piece in out, (piece, out)
    assert out.splitlines()[-1].startswith("invalid: 5 workstreams, 7 errors")


def test_validate_warnings_do_not_fail(tmp_path: Path) -> None:
    write(tmp_path / "w.yaml",
          "- id: one\n  tool: shell\n  command: 'true'\n  scope: {allow: [src/]}\n"
          "- id: two\n  tool: shell\n  command: 'true'\n  scope: {allow: ['src/**/*.py']}\n"
          "- id: three\n  tool: shell\n  command: 'true'\n  depends_on: [one, one]\n")
    proc = uet("validate", "w.yaml", cwd=tmp_path)  # not a git repository
    assert proc.returncode == 0, proc.stdout + proc.stderr
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning: ")]
    assert any("one and two may conflict" in w and "src/x.py" in w for w in warnings), warnings
    assert "warning: w.yaml:three: depends_on: duplicate entries removed: one" in warnings
    assert proc.stdout.splitlines()[-1] == "ok: 3 workstreams in 2 waves, 0 errors, 3 warnings"


def test_validate_outside_git_reads_uet_toml_from_cwd(tmp_path: Path) -> None:
    write(tmp_path / "uet.toml", '[run]\nworkstreams = "specs"\n')
    write(tmp_path / "specs" / "a.yaml", "id: a\ntool: shell\ncommand: 'true'\n")
    proc = uet("validate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("ok: 1 workstream")


def test_validate_bad_config_and_missing_default_dir(tmp_path: Path) -> None:
    write(tmp_path / "uet.toml", "[run]\njobs = 'many'\n")
    proc = uet("validate", cwd=tmp_path)
    assert_clean_failure(proc)
    assert "uet.toml: run.jobs: Input should be a valid integer" in proc.stdout
    assert "workstreams: no such file or directory" in proc.stdout


def test_validate_hostile_ids_one_line_each(tmp_path: Path) -> None:
    hostile = ["../x", "a..b", "x.lock", "a b", "@{", "a\x00b", "a\nb", "a\x1b[2Jb", "\r",
               "\u0430dmin", "x" * 10240, "a\u2028b"]
    items = [{"id": h, "tool": "shell", "command": "true"} for h in hostile]
    write(tmp_path / "w.json", json.dumps(items))
    proc = uet("validate", "w.json", cwd=tmp_path)
    assert_clean_failure(proc)
    errors = proc.stdout.splitlines()[:-1]
    assert len(errors) == len(hostile), errors
    for i, line in enumerate(errors):
        assert line.startswith(f"w.json:[{i}]: id: "), line
        assert len(line) < 300
    assert "U+0430 CYRILLIC SMALL LETTER A" in errors[9]
    assert "longer than 100 characters (10240)" in errors[10]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.yaml", b"", "w/empty.yaml: empty file"),
        ("bin.json", b"\x89PNG\r\n\x1a\n\x00\x00", "w/bin.json: binary file"),
        ("list.yaml", b"- 1\n- two\n", "w/list.yaml:[0]: expected a workstream"),
        ("legacy.json", b'/* DOC */\n{"id": "{ws-x}", "tasks": {[\'a\']}}',
         "w/legacy.json: line 2 column 28: unrendered template"),
    ],
)
def test_validate_bad_files_never_traceback(tmp_path: Path, name: str, content: bytes,
                                            message: str) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / name).write_bytes(content)
    proc = uet("validate", "w", cwd=tmp_path)
    assert_clean_failure(proc)
    assert message in proc.stdout


def test_validate_bundled_samples_schema_and_plan(tmp_path: Path) -> None:
    # the samples name real tools (aider, claude, ruff); whether they are installed decides
    # the tool errors, but the spec and the plan are always clean
    proc = uet("validate", str(samples_dir()), cwd=tmp_path)
    assert "Traceback" not in proc.stdout + proc.stderr
    spec_lines = [line for line in proc.stdout.splitlines()
                  if line and not line.startswith(("warning:", "ok:", "invalid:"))]
    assert all(": tool: " in line for line in spec_lines), spec_lines
    assert "style-fixes may conflict" in proc.stdout


# -- schema ----------------------------------------------------------------------------------


def test_schema_is_the_workstream_json_schema(tmp_path: Path) -> None:
    proc = uet("schema", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == set(Workstream.model_fields)
    assert schema["required"] == ["id"]
    assert schema["properties"]["id"]["pattern"] == "^[a-z0-9][a-z0-9._-]*$"


# -- convert ---------------------------------------------------------------------------------


def test_convert_cli_report_and_exit_codes(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write(src / "a.json", json.dumps({"id": "ws-a", "files_scope": ["src/a.py"], "tasks": ["A"],
                                      "tool": "aider"}))
    write(src / "b.json", "/* DOC_ID: B */\n" + json.dumps({
        "id": "ws-b", "files_scope": ["src/b.py"], "tasks": ["B"], "tool": "codex",
        "depends_on": ["ws-a", "ws-a"], "acceptance_tests": ["Works well"]}))
    proc = uet("convert", "in", "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines_of(proc.stdout) == [
        "converted  ws-a  (in/a.json) -> out/ws-a.yaml",
        "warned     ws-b  (in/b.json) -> out/ws-b.yaml",
        "  warning: acceptance_tests[0] is not a command; added to the prompt as an acceptance "
        "criterion: 'Works well'",
        "  warning: depends_on: duplicates removed: ws-a",
        "2 converted (1 clean, 1 with warnings), 0 refused, 0 unresolved dependencies",
    ]
    # a second run refuses to overwrite, one line, exit 2; --force overwrites
    again = uet("convert", "in", "-o", "out", cwd=tmp_path)
    assert_clean_failure(again)
    assert lines_of(again.stderr) == [
        "uet: out/ws-a.yaml: already exists (and 1 more); use --force to overwrite"
    ]
    assert uet("convert", "in", "-o", "out", "--force", cwd=tmp_path).returncode == 0
    plan = uet("plan", "out", "--json", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert [n["id"] for n in json.loads(plan.stdout)["nodes"]] == ["ws-a", "ws-b"]


def test_convert_refusal_and_unresolved_dependency_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write(src / "a.json", json.dumps({"id": "ws-a", "files_scope": ["/etc/x"], "tasks": ["A"]}))
    write(src / "b.json", json.dumps({"id": "ws-b", "files_scope": ["b"], "tasks": ["B"],
                                      "tool": "aider", "depends_on": ["ws-a"]}))
    proc = uet("convert", "in", "-o", "out", "-v", cwd=tmp_path)
    assert_clean_failure(proc)
    out = lines_of(proc.stdout)
    assert out[0] == ("refused    in/a.json: files_scope[0]: '/etc/x': absolute path; patterns "
                      "are relative to the repository root")
    assert "  note: tasks -> prompt (1); files_scope+files_create -> scope.allow (2); " \
           "acceptance_tests -> acceptance (0)" in out
    assert ("unresolved dependency: ws-b (in/b.json) depends on 'ws-a', which was refused "
            "(in/a.json: files_scope[0]: '/etc/x': absolute path; patterns are relative to the "
            "repository root)") in out
    assert out[-1] == "1 converted (0 clean, 1 with warnings), 1 refused, 1 unresolved dependencies"
    # the dependency is kept in the file, so the plan refuses the set and names it
    assert "- ws-a" in (tmp_path / "out" / "ws-b.yaml").read_text()
    plan = uet("plan", "out", cwd=tmp_path)
    assert_clean_failure(plan)
    assert "ws-a" in plan.stderr and "ws-b" in plan.stderr


def test_convert_into_a_directory_inside_the_input(tmp_path: Path) -> None:
    write(tmp_path / "legacy" / "a.json",
          json.dumps({"id": "ws-a", "files_scope": ["a.py"], "tasks": ["A"], "tool": "aider"}))
    first = uet("convert", "legacy", "-o", "legacy/native", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    again = uet("convert", "legacy", "-o", "legacy/native", "--force", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert lines_of(again.stdout) == [
        "converted  ws-a  (legacy/a.json) -> legacy/native/ws-a.yaml",
        "1 converted (1 clean, 0 with warnings), 0 refused, 0 unresolved dependencies",
    ]


def test_convert_needs_output_and_paths(tmp_path: Path) -> None:
    proc = uet("convert", "x.json", cwd=tmp_path)
    assert_clean_failure(proc)
    proc = uet("convert", "missing.json", "-o", "out", cwd=tmp_path)
    assert_clean_failure(proc)
    assert "refused    missing.json: no such file or directory" in proc.stdout


def test_convert_hostile_legacy_ids_one_line_each(tmp_path: Path) -> None:
    hostile = ["../x", "a..b", "x.lock", "a b", "@{", "a\nb", "a\x1b[2Jb", "\u0430dmin",
               "x" * 10240]
    bundles = [{"id": h, "files_scope": ["a.py"], "tasks": ["A"], "tool": "aider"}
               for h in hostile]
    write(tmp_path / "in.json", json.dumps(bundles))
    proc = uet("convert", "in.json", "-o", "out", cwd=tmp_path)
    assert_clean_failure(proc)
    refused = [line for line in proc.stdout.splitlines() if line.startswith("refused")]
    assert len(refused) == len(hostile)
    for i, line in enumerate(refused):
        assert line.startswith(f"refused    in.json [{i}]: id: "), line
        assert len(line) < 300
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
