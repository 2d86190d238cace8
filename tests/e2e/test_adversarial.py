"""Hostile tools and hostile circumstances (issue 10, "Seen"): one test per attack that broke a
promise of uet, each driving the real ``uet`` command on a real repository and checking the
outcome with the git CLI. The tools are the small scripts tests/e2e/tools/adv-*.

Where the sandbox (bubblewrap) makes an attack impossible, the test runs in both modes: the
default (``bwrap``; skipped when bwrap is unusable here) and ``[sandbox] mode = "none"``, where
uet's checks after each tool are what stops it."""

from __future__ import annotations

import os
import subprocess as sp
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.commands.landkit import snapshot_files
from tests.conftest import git
from tests.e2e.helpers import (
    fsck_clean,
    landed_workstreams,
    last_run,
    ledger_subjects,
    run,
    run_ok,
    runs,
    setup_repo,
    states,
    tool,
)
from uet_git.engine.verify import MAY_CHANGE_CHECKS
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.writer import Ledger

try:
    from uet_git.workers.sandbox import available
except ImportError:  # the code before the sandbox: its default mode is what the user got
    def available() -> str | None:
        return None

NO_SANDBOX = '[sandbox]\nmode = "none"\n'
BWRAP = pytest.param("bwrap", marks=pytest.mark.skipif(
    available() is not None, reason=f"bwrap unusable: {available()}"))
MODES = [BWRAP, "none"]
HOOK = "#!/bin/sh\n# The base's check: no file outside .uet/ may say FORBIDDEN.\n" \
       "! grep -rq FORBIDDEN --exclude-dir=.git --exclude-dir=.uet .\n"


def config_for(mode: str, extra: str = "") -> str | None:
    text = (NO_SANDBOX if mode == "none" else "") + extra
    return text or None


def reason(repo: Path, ws: str, run_id: str | None = None) -> str:
    """The Uet-Reason of the workstream's last transition, read from the ledger with git."""
    run_id = run_id or last_run(repo)
    out = git(repo, "log", "-1", "--format=%(trailers:key=Uet-Reason,valueonly)",
              f"--grep=^{ws}: ", f"refs/uet/ledger/{run_id}")
    return out.strip()


def ledger_text(repo: Path, run_id: str | None = None) -> str:
    return git(repo, "log", "--format=%B", f"refs/uet/ledger/{run_id or last_run(repo)}")


def recorded_tip(repo: Path, run_id: str) -> str:
    """The integration tip the ledger recorded last (newest Uet-Integration trailer)."""
    out = git(repo, "log", "--format=%(trailers:key=Uet-Integration,valueonly)",
              f"refs/uet/ledger/{run_id}")
    return next(line.strip() for line in out.splitlines() if line.strip())


def worktrees(repo: Path) -> list[str]:
    return git(repo, "worktree", "list", "--porcelain").split("\n\n")


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# --- The target moves only to what the ledger recorded ---------------------------------------

@pytest.mark.parametrize("forger", ["git-cli-after-run", "unsandboxed-tool"])
def test_forged_integration_ref_is_refused_repaired_then_the_recorded_tip_lands(
        tmp_path: Path, forger: str) -> None:
    by_tool = forger == "unsandboxed-tool"
    repo = setup_repo(tmp_path / "r", config=NO_SANDBOX if by_tool else None, workstreams={
        "good": {"command": "echo good > good.txt"},
        **({"forger": {"depends_on": ["good"], "command": tool("adv-forge-integration")}}
           if by_tool else {}),
    })
    base = git(repo, "rev-parse", "main")
    run(repo, "run", "--jobs", "1", "--land", "never")
    run_id = last_run(repo)
    ref = f"refs/uet/integration/{run_id}"
    if not by_tool:
        forged = git(repo, "commit-tree", "-p", git(repo, "rev-parse", ref), "-m", "forged",
                     f"{base}^{{tree}}")
        git(repo, "update-ref", ref, forged)
    forged = git(repo, "rev-parse", ref)
    tip = recorded_tip(repo, run_id)
    assert forged != tip, "the forgery did not happen"
    proc = run(repo, "land", run_id)
    assert proc.returncode != 0
    line = one_line(proc.stderr)
    assert ref in line and tip[:12] in line, line
    assert git(repo, "rev-parse", "main") == base
    assert run(repo, "fsck", run_id).returncode == 1
    run_ok(repo, "fsck", "--repair", run_id)
    assert git(repo, "rev-parse", ref) == tip
    run_ok(repo, "fsck", run_id)
    run_ok(repo, "land", run_id)
    assert git(repo, "rev-parse", "main") == tip
    assert sp.run(["git", "merge-base", "--is-ancestor", forged, "main"], cwd=repo).returncode
    assert "good" in landed_workstreams(repo)


@pytest.mark.parametrize("mode", MODES)
def test_tool_moving_the_users_branch_is_tampering_and_is_put_back(
        tmp_path: Path, mode: str) -> None:
    repo = setup_repo(tmp_path / "r", config=config_for(mode), workstreams={
        "evil": {"command": tool("adv-move-main")},
        "good": {"depends_on": ["evil"], "command": "echo good > good.txt"},
        "other": {"command": "echo other > other.txt"},
    })
    base = git(repo, "rev-parse", "main")
    proc = run(repo, "run", "--jobs", "1")
    out = proc.stdout + proc.stderr
    st = states(repo)
    assert "--rebase" not in out, out
    assert git(repo, "rev-list", f"{base}..main", "--format=%s", "--no-commit-header") \
        .count("tool commit") == 0
    assert landed_workstreams(repo).count("other") == 1
    if mode == "none":
        assert (st["evil"], reason(repo, "evil")) == ("quarantined", "tampered")
        assert st["good"] == "blocked"
        evidence = ledger_text(repo)
        assert "refs/heads/main" in evidence and base[:12] in evidence
        assert git(repo, "rev-parse", "main^") == base  # only `other` on top of the base
    else:  # the sandbox kept refs read-only: the tool's update-ref failed, its work is fine
        assert st == {"evil": "committed", "good": "committed", "other": "committed"}
    fsck_clean(repo)


# --- A patch never changes what judges it ----------------------------------------------------

HOOK_ATTACKS = ("delete", "chmod", "rewrite", "symlink")


@pytest.mark.parametrize("declared", [False, True], ids=["undeclared", "may_change_checks"])
def test_patch_disabling_the_base_hook_is_still_judged_by_it(
        tmp_path: Path, declared: bool) -> None:
    """Each way of disabling the hook is a workstream of its own in one run (one job, one
    after the other): each is judged by the base's hook whatever the others did."""
    evil = {f"evil-{attack}": {"command": [tool("adv-attack-hook"), attack],
                               **({"may_change_checks": True} if declared else {})}
            for attack in HOOK_ATTACKS}
    repo = setup_repo(tmp_path / "r", files={"README.md": "hello\n",
                                             ".uet/hooks/pre-merge.d/check": HOOK},
                      workstreams={**evil, "good": {"command": "echo good > good.txt"}})
    git(repo, "update-index", "--chmod=+x", ".uet/hooks/pre-merge.d/check")
    git(repo, "commit", "-q", "-m", "hook executable")
    hook_blob = git(repo, "rev-parse", "main:.uet/hooks/pre-merge.d/check")
    run_ok(repo, "run", "--jobs", "1", code=1)
    assert states(repo) == {**dict.fromkeys(evil, "quarantined"), "good": "committed"}
    want = "hook-failed" if declared else "protected-path"
    assert {ws: reason(repo, ws) for ws in evil} == dict.fromkeys(evil, want)
    assert git(repo, "ls-tree", "main", "bad.txt") == ""
    assert git(repo, "rev-parse", "main:.uet/hooks/pre-merge.d/check") == hook_blob
    assert git(repo, "ls-tree", "main", ".uet/hooks/pre-merge.d/check").startswith("100755")
    fsck_clean(repo)


def test_patch_editing_the_hooks_in_uet_toml_is_protected_path(tmp_path: Path) -> None:
    toml = '[hooks]\npre-merge = ["! grep -rq FORBIDDE[N] --exclude-dir=.git ."]\n'
    repo = setup_repo(tmp_path / "r", config=toml, workstreams={
        "evil": {"command": "printf '[hooks]\\npre-merge = []\\n' > uet.toml"},
        "good": {"command": "echo good > good.txt"}})
    run_ok(repo, "run", "--jobs", "1", code=1)
    assert states(repo) == {"evil": "quarantined", "good": "committed"}
    assert reason(repo, "evil") == "protected-path"
    assert git(repo, "show", "main:uet.toml") == toml.strip()
    # The next run is judged by the hooks still: FORBIDDEN does not land.
    (repo / "workstreams" / "later.yaml").write_text(
        "id: later\ncommand: echo FORBIDDEN > later.txt\n")
    git(repo, "add", "workstreams/later.yaml")
    git(repo, "commit", "-q", "-m", "later")
    run_ok(repo, "run", "--only", "later", code=1)
    assert reason(repo, "later") == "hook-failed"
    fsck_clean(repo)


@pytest.mark.parametrize("mode", MODES)
def test_a_hook_planted_by_a_patch_never_runs_on_later_candidates(
        tmp_path: Path, mode: str) -> None:
    """The base has a hook of its own (so hooks are due on every candidate): only that one
    judges them, not the planted one."""
    marker = tmp_path / "planted-hook-ran"
    repo = setup_repo(tmp_path / "r", config=config_for(mode), files={
        "README.md": "hello\n", ".uet/hooks/pre-merge.d/check": HOOK}, workstreams={
        "plant": {"command": [tool("adv-plant-hook"), str(marker)], "may_change_checks": True},
        "later": {"depends_on": ["plant"], "command": "echo later > later.txt"},
        "after": {"depends_on": ["later"], "command": "echo after > after.txt"},
    })
    git(repo, "update-index", "--chmod=+x", ".uet/hooks/pre-merge.d/check")
    git(repo, "commit", "-q", "-m", "hook executable")
    run_ok(repo, "run", "--jobs", "1")
    assert states(repo) == {"plant": "committed", "later": "committed", "after": "committed"}
    assert not marker.exists(), "the planted hook ran"
    assert landed_workstreams(repo) == ["plant", "later", "after"]
    # Landed: it judges the runs based on it. The patch that changed the checks is marked on
    # its `verified` transition, the later ones are not.
    assert os.access(repo / ".uet/hooks/pre-merge.d/planted", os.X_OK)
    log = git(repo, "log", f"--format=%s%x00%(trailers:key={MAY_CHANGE_CHECKS},valueonly)",
              f"refs/uet/ledger/{last_run(repo)}")
    marked = {s.split(":", 1)[0]: v.strip() for s, _, v in
              (line.partition("\0") for line in log.splitlines()) if s.endswith("-> verified")}
    assert marked == {"plant": "true", "later": "", "after": ""}, log
    fsck_clean(repo)


def test_gitmodules_with_an_option_url_is_bad_tree_before_queueing(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "evil": {"command": tool("adv-gitmodules")},
        "good": {"command": "echo good > good.txt"}})
    run_ok(repo, "run", "--jobs", "1", code=1)
    assert states(repo) == {"evil": "quarantined", "good": "committed"}
    assert reason(repo, "evil") == "bad-tree"
    subjects = ledger_subjects(repo)
    assert not any(s.startswith("evil:") and s.endswith("queued") for s in subjects), subjects
    assert git(repo, "ls-tree", "main", ".gitmodules") == ""
    # main as a fresh clone sees it, every object checked on the way.
    clone = tmp_path / "clone"
    git(tmp_path, "-c", "transfer.fsckObjects=true", "clone", "-q", "--no-local",
        "--single-branch", "-b", "main", str(repo), str(clone))
    fsck_clean(clone, uet_fsck=False)


# --- Tools run in a sandbox ------------------------------------------------------------------

def test_sandboxed_tool_cannot_write_the_users_checkout(tmp_path: Path) -> None:
    """Only with bwrap: unsandboxed (``mode = "none"``) a tool runs as the user and can write
    any file the user can; nothing after the fact restores it (docs/reliability.md)."""
    if available() is not None:
        pytest.skip(f"bwrap unusable: {available()}")
    repo = setup_repo(tmp_path / "r", files={"README.md": "the user's README\n"},
                      workstreams={"evil": {"command": tool("adv-escape")}})
    (repo / "README.md").write_bytes(b"the user's README, edited, not committed\n")
    run(repo, "run", "--jobs", "1")
    assert (repo / "README.md").read_bytes() == b"the user's README, edited, not committed\n"
    assert git(repo, "show", "main:README.md") == "the user's README"
    assert "pwned" not in git(repo, "grep", "-I", "-e", "pwned", "main", "--", ".", check=False)


PLANTED_SETTINGS = ("core.hooksPath", "core.fsmonitor")


@pytest.mark.parametrize("mode", MODES)
def test_planted_git_config_never_runs_and_does_not_stay(tmp_path: Path, mode: str) -> None:
    """One planting workstream per setting, in one run (one job, one after the other; each
    with its own marker, program and dependent): each is caught and undone whatever the other
    did, as a run of its own would show."""
    markers = {s: tmp_path / f"planted-{s}-ran" for s in PLANTED_SETTINGS}
    wss: dict[str, dict[str, object]] = {}
    for i, setting in enumerate(PLANTED_SETTINGS):
        wss[f"evil{i}"] = {"command": [tool("adv-plant-config"), setting,
                                       str(tmp_path / f"planted{i}"), str(markers[setting])]}
        wss[f"good{i}"] = {"depends_on": [f"evil{i}"], "command": f"echo g > good{i}.txt"}
    repo = setup_repo(tmp_path / "r", config=config_for(mode), workstreams={
        **wss, "other": {"command": "echo other > other.txt"}})
    before = git(repo, "config", "--list", "--local")
    run(repo, "run", "--jobs", "1")
    assert [s for s, m in markers.items() if m.exists()] == [], \
        "a program planted in git config ran"
    # `config --list` shows any of the settings still there: `config --get` of each is empty.
    assert git(repo, "config", "--list", "--local") == before
    assert "other" in landed_workstreams(repo)  # uet's git ran in the user's checkout too
    if mode == "none":
        st = states(repo)
        assert {(st[f"evil{i}"], reason(repo, f"evil{i}")) for i in range(2)} == {
            ("quarantined", "tampered")}
    # The user's own git afterwards does not run them either.
    git(repo, "status")
    git(repo, "commit", "-q", "--allow-empty", "-m", "user commit")
    assert [s for s, m in markers.items() if m.exists()] == []


@pytest.mark.parametrize("mode", MODES)
def test_setsid_daemon_never_lands_in_another_workstreams_patch(
        tmp_path: Path, mode: str) -> None:
    repo = setup_repo(tmp_path / "r", config=config_for(mode), workstreams={
        "evil": {"command": tool("adv-daemon")},
        "next1": {"depends_on": ["evil"], "command": "sleep 0.5; echo n1 > n1.txt"},
        "next2": {"depends_on": ["next1"], "command": "sleep 0.5; echo n2 > n2.txt"},
    })
    run(repo, "run", "--jobs", "1")
    time.sleep(0.8)  # longer than the daemon would live
    for ref in git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/patches/").split():
        names = git(repo, "ls-tree", "-r", "--name-only", ref).split()
        assert "daemon.txt" not in names and "daemon2.txt" not in names, ref
    names = git(repo, "ls-tree", "-r", "--name-only", "main").split()
    assert "daemon.txt" not in names and "daemon2.txt" not in names
    assert {"n1.txt", "n2.txt"} <= set(names)


@pytest.mark.parametrize("var", ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "UET_RUN"])
def test_workstream_env_redirecting_git_or_uet_is_a_spec_error(tmp_path: Path, var: str) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "sneaky": {"command": "echo x > x.txt", "env": {var: "/tmp/elsewhere"}}})
    proc = run(repo, "run")
    assert proc.returncode == 2
    line = one_line(proc.stderr)
    assert var in line and "sneaky" in line, line
    assert git(repo, "for-each-ref", "refs/uet/") == ""


# --- Landing like `git merge --ff-only`, and crash-safe ----------------------------------------

def _submodule(tmp_path: Path, repo: Path) -> None:
    sub = tmp_path / "sub"
    git(tmp_path, "init", "-q", "-b", "main", str(sub))
    (sub / "s.txt").write_text("sub\n")
    git(sub, "add", "s.txt")
    git(sub, "commit", "-q", "-m", "sub")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "sub")
    git(repo, "commit", "-q", "-m", "add submodule")


@pytest.mark.parametrize("local", ["modified", "staged", "dirty-submodule"])
def test_unrelated_local_changes_do_not_stop_landing_and_are_kept(
        tmp_path: Path, local: str) -> None:
    repo = setup_repo(tmp_path / "r", files={"README.md": "hello\n", "notes.txt": "mine\n"},
                      workstreams={"a": {"command": "echo a > a.txt"}})
    if local == "dirty-submodule":
        _submodule(tmp_path, repo)
        (repo / "sub" / "s.txt").write_bytes(b"my submodule work\n")
        kept = repo / "sub" / "s.txt"
    else:
        (repo / "notes.txt").write_bytes(b"my edit\x00\xff\n")
        kept = repo / "notes.txt"
        if local == "staged":
            git(repo, "add", "notes.txt")
    before = kept.read_bytes()
    staged = git(repo, "diff", "--cached", "--name-only")
    run_ok(repo, "run")
    assert landed_workstreams(repo) == ["a"]
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "main")
    assert (repo / "a.txt").read_text() == "a\n"
    assert kept.read_bytes() == before
    assert git(repo, "diff", "--cached", "--name-only") == staged
    fsck_clean(repo)


def test_ignored_file_in_the_way_refuses_landing_and_stays(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", files={"README.md": "hello\n", ".gitignore": "*.env\n"},
                      workstreams={"a": {
                          "command": "echo PUBLIC=1 > secrets.env && git add -f secrets.env"}})
    secret = b"API_KEY=do-not-lose\n"
    (repo / "secrets.env").write_bytes(secret)
    base = git(repo, "rev-parse", "main")
    run(repo, "run", "--land", "never")
    run_id = last_run(repo)
    assert states(repo) == {"a": "committed"}
    assert git(repo, "show", f"refs/uet/integration/{run_id}:secrets.env") == "PUBLIC=1"
    before = snapshot_files(repo)
    proc = run(repo, "land", run_id)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith("uet: ") and "ignored secrets.env" in line, line
    assert f"`uet land {run_id}`" in line, line
    assert (repo / "secrets.env").read_bytes() == secret
    assert snapshot_files(repo) == before
    assert git(repo, "rev-parse", "main") == base


def test_landing_during_the_users_rebase_is_refused_and_the_rebase_survives(
        tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    (repo / "mine.txt").write_text("one\n")
    git(repo, "add", "mine.txt")
    git(repo, "commit", "-q", "-m", "mine one")
    (repo / "mine.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "mine two")
    run_ok(repo, "run", "--land", "never")
    run_id = last_run(repo)
    main = git(repo, "rev-parse", "main")
    env = {**os.environ, "GIT_SEQUENCE_EDITOR": "sed -i 1s/^pick/edit/"}
    sp.run(["git", "rebase", "-q", "-i", "HEAD~2"], cwd=repo, env=env, check=True,
           capture_output=True)
    assert (repo / ".git" / "rebase-merge").is_dir()
    stopped_at = git(repo, "rev-parse", "HEAD")
    proc = run(repo, "land", run_id)
    assert proc.returncode == 1
    line = one_line(proc.stderr)
    assert line.startswith("uet: ") and "a rebase is in progress" in line, line
    assert git(repo, "rev-parse", "main") == main
    assert git(repo, "rev-parse", "HEAD") == stopped_at
    assert (repo / ".git" / "rebase-merge").is_dir()
    git(repo, "rebase", "--continue")
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    run_ok(repo, "land", run_id, "--rebase")
    assert landed_workstreams(repo) == ["a"]


@pytest.fixture(scope="module")
def two_runs_landed_with_rebase(tmp_path_factory: pytest.TempPathFactory
                                ) -> tuple[Path, str, str]:
    """Two runs on one base, the first landed, the second refused (the target moved) then
    landed with --rebase: made once for the tests below, which only read it."""
    repo = setup_repo(tmp_path_factory.mktemp("two-runs") / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"depends_on": ["a"], "command": "echo b > b.txt"},
        "c": {"command": "echo c > c.txt"}})
    # Set up before the first test's own fixtures: no test HOME yet.
    env = {"HOME": str(repo.parent)}
    run_ok(repo, "run", "--land", "never", "--only", "a,b", env=env)
    run_ok(repo, "run", "--land", "never", env=env)
    r1, r2 = runs(repo)
    run_ok(repo, "land", r1, env=env)
    moved = run(repo, "land", r2, env=env)
    assert moved.returncode == 1 and "--rebase" in moved.stderr
    proc = run_ok(repo, "land", r2, "--rebase", env=env)
    return repo, r2, proc.stdout + proc.stderr


def test_two_runs_then_land_rebase_lands_each_change_once(
        two_runs_landed_with_rebase: tuple[Path, str, str]) -> None:
    repo, _, out = two_runs_landed_with_rebase
    assert sorted(landed_workstreams(repo)) == ["a", "b", "c"]
    assert "skipped" in out, out  # it says what it skipped
    for line in git(repo, "log", "--format=%H%x00%T%x00%P", "main").splitlines():
        _, tree, parents = line.split("\x00")
        for p in parents.split():
            assert git(repo, "rev-parse", f"{p}^{{tree}}") != tree, f"empty commit {line}"
    fsck_clean(repo, uet_fsck=False)


def test_uet_fsck_is_clean_after_a_rebase_that_skipped_patches(
        two_runs_landed_with_rebase: tuple[Path, str, str]) -> None:
    repo, r2, _ = two_runs_landed_with_rebase
    run_ok(repo, "fsck", r2)


# --- Nothing is lost, even under git's own housekeeping -------------------------------------

def test_uet_gc_keeps_dropped_patches_through_git_gc(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "bad": {"command": "echo unique-$$-content > bad.txt", "acceptance": ["false"]},
        "good": {"command": "echo good > good.txt"}})
    run_ok(repo, "run", code=1)
    run_id = last_run(repo)
    patch = git(repo, "rev-parse", f"refs/uet/patches/{run_id}/bad/1")
    run_ok(repo, "drop", "bad", "--run", run_id)
    run_ok(repo, "gc", "--older-than", "0s")
    git(repo, "-c", "gc.reflogExpire=now", "-c", "gc.reflogExpireUnreachable=now",
        "gc", "-q", "--prune=now")
    assert sp.run(["git", "cat-file", "-e", patch], cwd=repo).returncode == 0
    assert sp.run(["git", "cat-file", "-e", f"{patch}:bad.txt"], cwd=repo).returncode == 0


@contextmanager
def git_loop(repo: Path, *args: str, limit: int = 200) -> Iterator[list[int]]:
    """Run ``git ARGS`` over and over in a process of its own (tools/adv-git-loop, at most
    ``limit`` times) while the body runs; the list yielded holds the exit codes once the body
    is done. The loop stops after its current round (a gc killed mid-way would leave its
    gc.pid for the next one to wait out)."""
    stop = repo.parent / "git-loop.stop"
    codes_file = repo.parent / "git-loop.codes"
    codes: list[int] = []
    loop = sp.Popen([tool("adv-git-loop"), str(stop), str(limit), str(codes_file), *args],
                    cwd=repo, stdin=sp.DEVNULL, stdout=sp.DEVNULL, stderr=sp.DEVNULL)
    try:
        yield codes
    finally:
        stop.touch()
        loop.wait(timeout=60)
        if codes_file.exists():
            codes.extend(int(c) for c in codes_file.read_text().split())


def _busy_repo(path: Path) -> Path:
    return setup_repo(path, workstreams={
        f"w{i}": {"command": f"sleep 0.1; echo {i} > f{i}.txt",
                  **({"depends_on": [f"w{i - 1}"]} if i % 2 else {})} for i in range(6)})


def test_git_gc_prune_now_looping_during_a_run(tmp_path: Path) -> None:
    """A patch is pinned by its worktree's HEAD from the moment it is written, each ledger
    transaction outwaits a pruning gc that may have walked the refs before they moved and
    writes again what it took, `git worktree add` is retried when a worktree prune broke
    it; what is still cut (a candidate pruned between its making and its transaction) is an
    internal error that `uet resume` re-applies. Whatever the timing: all six land, fsck
    clean."""
    repo = _busy_repo(tmp_path / "r")
    with git_loop(repo, "gc", "-q", "--prune=now", limit=40) as codes:
        proc = run(repo, "run", "--jobs", "2")
    assert codes, "the gc loop never ran"
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    status = run(repo, "status")
    assert status.returncode in (0, 1), status.stderr
    resumed = run(repo, "resume")
    assert resumed.returncode in (0, 1), resumed.stderr
    fsck = run(repo, "fsck")
    if fsck.returncode:
        run_ok(repo, "fsck", "--repair")
    assert sorted(landed_workstreams(repo)) == [f"w{i}" for i in range(6)], (
        proc.stdout + proc.stderr + status.stdout + resumed.stdout + resumed.stderr)
    fsck_clean(repo)


def test_git_pack_refs_looping_during_a_run_still_records_finish(tmp_path: Path) -> None:
    repo = _busy_repo(tmp_path / "r")
    with git_loop(repo, "pack-refs", "--all") as codes:
        proc = run(repo, "run", "--jobs", "2")
    assert codes
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert ledger_subjects(repo)[-1] == "run: finish"
    assert sorted(landed_workstreams(repo)) == [f"w{i}" for i in range(6)]
    fsck_clean(repo)


@pytest.mark.parametrize("mode", MODES)
def test_tool_deleting_every_uet_ref_gets_a_truthful_outcome_and_a_clean_state(
        tmp_path: Path, mode: str) -> None:
    repo = setup_repo(tmp_path / "r", config=config_for(mode), workstreams={
        "first": {"command": "echo f > f.txt"},
        "evil": {"depends_on": ["first"], "command": tool("adv-delete-uet-refs")},
        "last": {"depends_on": ["evil"], "command": "echo l > l.txt"}})
    proc = run(repo, "run", "--jobs", "1")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "interrupted" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    if proc.stderr.strip():
        one_line(proc.stderr)
    kept = worktrees(repo)[1:]  # [worktree] keep: only uet's locked slots stay, for the next run
    assert all("/.git/uet/worktrees/" in w and "\nlocked" in w for w in kept), kept
    run_id = last_run(repo)
    if run(repo, "fsck", run_id).returncode:
        run_ok(repo, "fsck", "--repair", run_id)
    run_ok(repo, "fsck")
    assert "first" in landed_workstreams(repo)
    assert landed_workstreams(repo).count("first") == 1
    fsck_clean(repo)


def test_non_utf8_file_name_outside_scope_is_a_scope_violation(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", files={"src/keep.txt": "1\n"}, workstreams={
        "evil": {"command": tool("adv-nonutf8"), "scope": {"allow": ["src/**"]}}})
    run_ok(repo, "run", code=1)
    assert states(repo) == {"evil": "quarantined"}
    assert reason(repo, "evil") == "scope-violation"


def test_uet_debug_keeps_the_internal_error_exit_code(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={"a": {"command": "echo a > a.txt"}})
    run_ok(repo, "run")
    # A loose object that does not inflate (disk corruption): uet fsck fails inside.
    oid = git(repo, "rev-parse", f"refs/uet/ledger/{last_run(repo)}")
    loose = repo / ".git" / "objects" / oid[:2] / oid[2:]
    if not loose.exists():
        pytest.fail("the ledger tip is packed; this test needs it loose")
    loose.chmod(0o644)
    loose.write_bytes(b"not zlib at all")
    plain = run(repo, "fsck")
    debug = run(repo, "fsck", env={"UET_DEBUG": "1"})
    assert plain.returncode == 3, plain.stdout + plain.stderr
    assert "internal error" in one_line(plain.stderr)
    assert debug.returncode == 3, debug.stdout + debug.stderr
    assert "Traceback" in debug.stderr


@pytest.mark.parametrize(("crash", "summary", "resumed"), [
    ("a:queued", "uet failed on this workstream: UetError: candidate 0123456789ab is not an "
     "object in this repository", "committed"),
    ("a:tool-done", "uet failed on this workstream: NotFoundError: 'object not found - no match "
     "for id (0123456789abcdef0123456789abcdef01234567)'", "committed"),
    ("a:queued", "uet failed on this workstream: ValueError: something else went wrong",
     "quarantined")], ids=["patch-kept", "before-the-patch", "other-error"])
def test_resume_redoes_what_a_concurrent_prune_cut(tmp_path: Path, crash: str, summary: str,
                                                   resumed: str) -> None:
    """An internal error because a concurrent prune removed an object uet needed is uet's work
    cut short, not the workstream's failure: `uet resume` re-applies its patch, or runs it
    again when it had none yet (any other internal error stays quarantined)."""
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"command": "echo b > b.txt", "depends_on": ["a"]}})
    crashed = run(repo, "run", env={"UET_TEST_CRASH_AT": crash})  # a forked process dies
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    run_id = last_run(repo)
    with Ledger.open(Repo.open(repo), run_id) as ledger:
        ledger.record("a", "quarantined", attempt=1, reason="internal-error", summary=summary)
    proc = run(repo, "resume", run_id)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert states(repo, run_id)["a"] == resumed
    if resumed == "committed":
        said = "re-applying a" if crash == "a:queued" else "running again a"
        assert said in proc.stdout + proc.stderr
        assert sorted(landed_workstreams(repo)) == ["a", "b"]
    fsck_clean(repo)


def test_a_quarantined_candidate_survives_git_gc(tmp_path: Path) -> None:
    repo = setup_repo(tmp_path / "r", workstreams={
        "a": {"command": "echo a > a.txt"},
        "b": {"command": "echo b > b.txt", "acceptance": ["test ! -e a.txt"]}})
    run_ok(repo, "run", "--jobs", "1", code=1)
    assert reason(repo, "b") == "verify-failed"
    for entry in worktrees(repo)[1:]:
        path = entry.splitlines()[0].split(" ", 1)[1] if entry.strip() else ""
        if path:
            git(repo, "worktree", "remove", "--force", "--force", path)
    git(repo, "gc", "-q", "--prune=now")
    run_ok(repo, "fsck")
