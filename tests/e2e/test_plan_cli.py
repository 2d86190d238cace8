"""``uet plan`` end to end: the real command on real files in real git repositories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, uet
from tests.e2e.helpers import CORPUS


def write(root: Path, name: str, text: str) -> None:
    f = root / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)


def project(tmp_path: Path) -> Path:
    """A repository with a diamond, an independent workstream and one predictable conflict."""
    repo = make_repo(tmp_path / "repo", {"README.md": "hi\n", "src/app.py": "x = 1\n"})
    w = repo / "workstreams"
    write(w, "a.yaml", "id: ws-a\ntitle: Base\nestimate: 10\nscope: {allow: [src/core/]}\n")
    write(w, "b.yaml", "id: ws-b\ndepends_on: [ws-a]\nestimate: 20\n"
                       "scope: {allow: ['src/app.py']}\n")
    write(w, "c.json", json.dumps({"id": "ws-c", "depends_on": ["ws-a"], "estimate": 5,
                                   "scope": {"allow": ["docs/**"]}}))
    write(w, "sub/d.toml", 'id = "ws-d"\ndepends_on = ["ws-b", "ws-c"]\nestimate = 1\n'
                           '[scope]\nallow = ["docs/index.md"]\n')
    write(w, "e.yaml", "id: ws-e\nestimate: 2\nscope: {allow: ['src/*.py']}\n")
    return repo


def test_text_output_from_a_subdirectory(tmp_path: Path):
    repo = project(tmp_path)
    (repo / "src").mkdir(exist_ok=True)
    before = git(repo, "status", "--porcelain")
    r = uet("plan", cwd=repo / "src")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("5 workstreams, 4 dependencies, 3 waves")
    assert "  wave 1: ws-a ws-e" in out
    assert "  wave 2: ws-b ws-c" in out
    assert "  wave 3: ws-d" in out
    assert "critical path: 31 (seconds, from estimates)" in out
    assert "  ws-a -> ws-b -> ws-d" in out
    assert "total work: 38" in out
    assert "lower bound with 4 workers: 31 = max(critical path 31, total 38 / 4)" in out
    assert "warnings (1):" in out
    assert ("  ws-b and ws-e may conflict: both may change src/app.py "
            "(add depends_on: [ws-b] to ws-e)") in out
    assert r.stderr == ""
    # Planning reads only: no refs, no changes to the checkout.
    assert git(repo, "for-each-ref", "refs/uet/") == ""
    assert git(repo, "status", "--porcelain") == before


def test_json_output_is_the_documented_object(tmp_path: Path):
    repo = project(tmp_path)
    r = uet("plan", "--json", "--jobs", "2", cwd=repo)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"version", "nodes", "edges", "waves", "critical_path", "jobs",
                         "lower_bound", "total_work", "warnings", "order", "implicit_edges",
                         "predicted_conflicts", "queue_bound"}
    assert data["version"] == 1
    assert data["order"] == ["ws-a", "ws-b", "ws-c", "ws-d", "ws-e"]
    assert [n["id"] for n in data["nodes"]] == data["order"]
    assert data["nodes"][0] == {"id": "ws-a", "title": "Base", "depends_on": [],
                                "estimate": 10.0, "weight": 10.0, "wave": 0, "remaining": 31.0}
    assert data["nodes"][3]["depends_on"] == ["ws-b", "ws-c"]
    assert data["edges"] == [["ws-a", "ws-b"], ["ws-a", "ws-c"], ["ws-b", "ws-d"],
                             ["ws-c", "ws-d"]]
    assert data["waves"] == [["ws-a", "ws-e"], ["ws-b", "ws-c"], ["ws-d"]]
    assert data["critical_path"] == {"length": 31.0, "ids": ["ws-a", "ws-b", "ws-d"]}
    assert data["jobs"] == 2
    assert data["total_work"] == 38.0
    assert data["lower_bound"] == 31.0
    assert data["warnings"] == [
        "ws-b and ws-e may conflict: both may change src/app.py (add depends_on: [ws-b] to ws-e)"
    ]


def test_jobs_from_environment_and_uet_toml(tmp_path: Path):
    repo = project(tmp_path)

    def jobs(env: dict[str, str] | None = None, *args: str) -> int:
        r = uet("plan", "--json", *args, cwd=repo, env=env)
        assert r.returncode == 0, r.stderr
        return int(json.loads(r.stdout)["jobs"])

    assert jobs() == 4
    write(repo, "uet.toml", "[run]\njobs = 3\n")
    assert jobs() == 3
    assert jobs({"PIPELINE_MAX_WORKERS": "5"}) == 5
    assert jobs({"UET_JOBS": "7", "PIPELINE_MAX_WORKERS": "5"}) == 7
    assert jobs({"UET_JOBS": "7"}, "-j", "1") == 1
    r = uet("plan", cwd=repo, env={"UET_JOBS": "many"})
    assert r.returncode == 2
    assert r.stderr.strip() == "uet: UET_JOBS: must be a positive integer, got 'many'"
    r = uet("plan", "--jobs", "0", cwd=repo)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_workstreams_path_from_uet_toml_and_explicit_path(tmp_path: Path):
    repo = project(tmp_path)
    (repo / "workstreams").rename(repo / "plans")
    r = uet("plan", cwd=repo)
    assert r.returncode == 2
    assert "uet init" in r.stderr
    write(repo, "uet.toml", '[run]\nworkstreams = "plans"\n')
    r = uet("plan", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("5 workstreams")
    # An explicit PATH is relative to the current directory, a single file works too.
    r = uet("plan", "plans/e.yaml", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 workstream, 0 dependencies, 1 wave (plans/e.yaml)")
    r = uet("plan", "nowhere", cwd=repo)
    assert r.returncode == 2
    assert r.stderr.strip() == "uet: nowhere: no such file or directory"


def test_outside_a_project_says_how_to_start(tmp_path: Path):
    r = uet("plan", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("uet: no workstreams/ directory in this directory")
    assert "run `uet init`" in lines[0]
    # Outside git, a workstreams/ directory in the current directory is planned.
    write(tmp_path, "workstreams/x.yaml", "id: x\n")
    write(tmp_path, "workstreams/y.yaml", "id: y\ndepends_on: [x]\nestimate: 30\n")
    r = uet("plan", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("2 workstreams, 1 dependency, 2 waves")
    assert "critical path: 31 (seconds from estimates of 1 of 2; 1 for each without one)" in (
        r.stdout
    )
    write(tmp_path, "workstreams/y.yaml", "id: y\ndepends_on: [x]\n")
    r = uet("plan", cwd=tmp_path)
    assert "critical path: 2 (no estimates: 1 per workstream)" in r.stdout


def test_dag_errors_one_line_each_exit_2(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    w = repo / "workstreams"
    write(w, "a.yaml", "id: a\ndepends_on: [b]\n")
    write(w, "b.yaml", "id: b\ndepends_on: [c]\n")
    write(w, "c.yaml", "id: c\ndepends_on: [a]\n")
    write(w, "d.yaml", "id: d\ndepends_on: [d, ghost]\n")
    write(w, "e.yaml", "id: e\ndepends_on: [f]\n")
    write(w, "f.yaml", "id: f\ndepends_on: [e]\n")
    for args in ([], ["--json"]):
        r = uet("plan", *args, cwd=repo)
        assert r.returncode == 2
        assert r.stdout == ""
        assert r.stderr.splitlines() == [
            "uet: workstreams/d.yaml:d: depends_on: depends on itself",
            "uet: workstreams/d.yaml:d: depends_on: unknown workstream 'ghost'",
            "uet: workstreams/a.yaml:a: depends_on: dependency cycle: a -> b -> c -> a",
            "uet: workstreams/e.yaml:e: depends_on: dependency cycle: e -> f -> e",
        ]


def test_load_errors_all_reported_no_traceback(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    w = repo / "workstreams"
    write(w, "bad-id.yaml", "id: ../x\n")
    write(w, "broken.yaml", "id: [unclosed\n")
    write(w, "ok.yaml", "id: ok\n")
    write(w, "unknown-field.yaml", "id: y\ncolour: blue\n")
    r = uet("plan", cwd=repo)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 3
    assert all(line.startswith("uet: workstreams/") for line in lines)
    assert any("bad-id.yaml" in line for line in lines)
    assert any("broken.yaml" in line for line in lines)
    assert any("unknown-field.yaml" in line and "colour" in line for line in lines)


def test_empty_directory_is_invalid_input(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    (repo / "workstreams").mkdir()
    for args in ([], ["--json"]):
        r = uet("plan", *args, cwd=repo)
        assert r.returncode == 2
        assert r.stdout == ""
        assert r.stderr.splitlines() == [
            "uet: workstreams: no workstream files (.yaml, .yml, .json, .toml) in this directory"
        ]


def test_unscoped_workstream_gets_one_warning(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    w = repo / "workstreams"
    write(w, "any.yaml", "id: any\n")
    for name in ("p", "q", "r"):
        write(w, f"{name}.yaml", f"id: {name}\nscope: {{allow: ['{name}.txt']}}\n")
    r = uet("plan", "--json", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["warnings"] == [
        "any has no scope.allow, so it may change any path and may conflict with 3 "
        "workstreams the plan does not order with it (p, q, r); add scope.allow or depends_on"
    ]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="legacy corpus not present")
def test_converted_legacy_corpus_plans_every_converted_bundle(tmp_path: Path):
    out = tmp_path / "out"
    r = uet("convert", str(CORPUS), "-o", str(out), cwd=tmp_path)
    assert "Traceback" not in r.stderr
    converted = sorted(p.stem for p in out.glob("*.yaml"))
    assert len(converted) > 20
    r = uet("plan", str(out), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert sorted(n["id"] for n in data["nodes"]) == converted
    assert sum(len(w) for w in data["waves"]) == len(converted)
    pos = {ws_id: i for i, ws_id in enumerate(data["order"])}
    assert all(pos[a] < pos[b] for a, b in data["edges"])


def test_many_warnings_are_capped_in_text_but_not_in_json(tmp_path: Path):
    repo = make_repo(tmp_path / "repo")
    items = [{"id": f"w{i:02d}", "scope": {"allow": ["shared.txt"]}} for i in range(16)]
    write(repo, "workstreams/all.json", json.dumps(items))
    r = uet("plan", cwd=repo)
    assert r.returncode == 0, r.stderr
    assert "warnings (120):" in r.stdout  # 16 * 15 / 2 unordered pairs
    shown = [line for line in r.stdout.splitlines() if "may conflict" in line]
    assert len(shown) == 100
    assert "  ... 20 more (uet plan --json lists them all)" in r.stdout
    r = uet("plan", "--json", cwd=repo)
    assert len(json.loads(r.stdout)["warnings"]) == 120


def test_bundled_sample_plans(tmp_path: Path):
    from uet_git.spec.load import samples_dir

    r = uet("plan", str(samples_dir()), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "critical path:" in r.stdout and "lower bound with 4 workers:" in r.stdout
    r = uet("plan", str(samples_dir()), "--json", cwd=tmp_path)
    data = json.loads(r.stdout)
    assert len(data["nodes"]) == len(data["order"]) >= 2
    assert data["lower_bound"] >= data["critical_path"]["length"] > 0
