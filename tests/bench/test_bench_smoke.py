"""Smoke tests of the benchmark harness: the generators, the DAG tools, the by-hand baseline
and the RSS wrapper work. No timing assertions (the machines are noisy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench import common
from bench.b2_scheduling import run_waves
from bench.common import (
    RepoShape,
    Stats,
    Table,
    random_dag,
    simulate_list_schedule,
)
from tests.conftest import git

TINY = RepoShape("tiny", files=12, mean_bytes=200, seed=7)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UET_BENCH_CACHE", str(tmp_path / "cache"))


def test_generated_repository_is_deterministic_and_cached(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    a = common.make_repo(TINY, tmp_path / "a")
    files, size = common.repo_size(a)
    assert files == 12 and size > 12 * 16
    head = git(a, "rev-parse", "HEAD")
    assert git(a, "status", "--porcelain") == ""
    # Cached: a second clone does not rebuild, and the bytes are the same.
    bare = common.cached_bare_repo(TINY)
    mtime = (bare / "HEAD").stat().st_mtime_ns
    b = common.make_repo(TINY, tmp_path / "b")
    assert (bare / "HEAD").stat().st_mtime_ns == mtime
    assert git(b, "rev-parse", "HEAD") == head
    # Another cache directory regenerates exactly the same commit.
    monkeypatch.setenv("UET_BENCH_CACHE", str(tmp_path / "other-cache"))
    c = common.make_repo(TINY, tmp_path / "c")
    assert git(c, "rev-parse", "HEAD") == head
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary build left behind


def test_random_dag_shape_and_bounds() -> None:
    dag = random_dag(60, seed=3, dmin=0.1, dmax=1.0)
    assert dag == random_dag(60, seed=3, dmin=0.1, dmax=1.0)
    assert dag != random_dag(60, seed=4, dmin=0.1, dmax=1.0)
    pos = {i: k for k, i in enumerate(dag.ids)}
    outdeg = dict.fromkeys(dag.ids, 0)
    for i, deps in dag.deps.items():
        for d in deps:
            assert pos[d] < pos[i]  # acyclic: edges go forward in the order
            outdeg[d] += 1
    assert max(outdeg.values()) <= 3 and any(outdeg.values())
    assert all(0.1 <= v <= 1.0 for v in dag.durations.values())
    waves = dag.waves()
    assert sorted(i for w in waves for i in w) == sorted(dag.ids)
    level = {i: k for k, w in enumerate(waves) for i in w}
    assert all(level[d] < level[i] for i in dag.ids for d in dag.deps[i])
    bound = dag.lower_bound(8)
    assert bound == max(dag.critical_path(), dag.total() / 8)
    cp_first = simulate_list_schedule(dag, 8, waves=False)
    by_waves = simulate_list_schedule(dag, 8, waves=True)
    assert bound - 1e-9 <= cp_first <= by_waves + 1e-9
    # One worker: the makespan is exactly the total work.
    assert simulate_list_schedule(dag, 1, waves=False) == pytest.approx(dag.total())


def test_workstream_writer_and_specs(tmp_path: Path) -> None:
    import json

    dag = random_dag(5, seed=1)
    d = common.write_workstreams(tmp_path / "ws", dag.specs())
    got = {p.stem: json.loads(p.read_text()) for p in d.iterdir()}
    assert set(got) == set(dag.ids)
    for i in dag.ids:
        assert got[i]["depends_on"] == dag.deps[i]
        assert f"sleep {dag.durations[i]:.3f}" in got[i]["command"]


def test_stats_and_table() -> None:
    st = Stats.of([3.0, 1.0, 2.0, 10.0, 4.0])
    assert (st.median, st.min, st.max, st.n) == (3.0, 1.0, 10.0, 5)
    assert st.fmt() == "3.000 s (1.000-10.000)"
    t = Table("T", ["a", "b"])
    t.add("x", 1.5)
    t.notes.append("note")
    assert "x  1.500" in t.render_text().splitlines()
    assert "| x | 1.500 |" in t.render_markdown()
    assert common.verdict(True) == "target met" and common.verdict(False) == "MISSED"


def test_by_hand_baseline_integrates_every_workstream(tmp_path: Path) -> None:
    repo = common.make_repo(TINY, tmp_path / "repo")
    from bench.b1_overhead import by_hand

    base = git(repo, "rev-parse", "HEAD")
    tip = by_hand(repo, 3, tmp_path / "scratch")
    # It cleans up after itself: no worktree or branch left, main untouched.
    assert git(repo, "worktree", "list").count("\n") == 0
    assert git(repo, "branch", "--format=%(refname:short)") == "main"
    assert git(repo, "rev-parse", "HEAD") == base
    # Its integration commit holds the three cherry-picks on top of the base.
    assert git(repo, "rev-list", "--count", f"{base}..{tip}") == "3"
    for i in (1, 2, 3):
        assert git(repo, "show", f"{tip}:bench-ws/ws-{i:04d}.txt") == f"line from ws-{i:04d}"


def test_wave_by_wave_runs_every_command_in_wave_order(tmp_path: Path) -> None:
    dag = random_dag(12, seed=5, dmin=0.0, dmax=0.0)
    run_waves(dag, tmp_path)
    done = {p.stem for p in (tmp_path / "bench-ws").iterdir()}
    assert done == set(dag.ids)


def test_runner_rejects_unknown_benchmark() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "bench" / "run.py"), "--only", "B9"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown benchmark" in proc.stderr


def test_uet_run_through_the_harness(tmp_path: Path) -> None:
    from bench.b3_integration import service_times

    repo = common.make_repo(TINY, tmp_path / "repo")
    ws_dir = common.write_workstreams(tmp_path / "ws", common.independent_specs(3))
    before = list(common.PROBLEMS)
    base = git(repo, "rev-parse", "main")
    res = common.run_uet(common.uet_run_args(ws_dir, 2, "--json"), cwd=repo, expect=3,
                         stream_events=True, measure_rss=True)
    assert before == common.PROBLEMS, common.PROBLEMS[len(before):]
    assert res.returncode == 0 and res.committed() == 3
    assert res.peak_rss_kib is not None and res.peak_rss_kib > 5_000
    run = str(res.summary["run"])
    refs = git(repo, "for-each-ref", "--format=%(refname)", f"refs/uet/committed/{run}/")
    assert len(refs.splitlines()) == 3
    st = service_times(res)
    assert len(st) == 3 and all(t >= 0 for t in st)
    # --land never: the target did not move; the integration ref holds the three patches.
    assert git(repo, "rev-parse", "main") == base
    assert git(repo, "rev-list", "--count", f"main..refs/uet/integration/{run}") == "3"


def test_run_uet_measures_peak_rss_uets_own_not_the_drivers(tmp_path: Path) -> None:
    # Grow this (driver) process well past what `uet --version` needs: the figure must not
    # follow it (ru_maxrss would, through fork + exec). 160 MiB alone is above the bound below
    # (each page written is CPU spent: no more than that).
    ballast = bytearray(160 * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    res = common.run_uet(["--version"], cwd=tmp_path, measure_rss=True)
    del ballast
    # the wrapper ran uet and measured it (one interpreter for both questions)
    assert res.returncode == 0 and "uet" in res.stdout
    assert res.peak_rss_kib is not None and 5_000 < res.peak_rss_kib < 150_000
