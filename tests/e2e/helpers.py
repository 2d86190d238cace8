"""Helpers for the `uet run` end-to-end tests: a repository with workstreams and uet.toml, the
`uet` command (in process; in a forked process of its own with ``forked=True``; in a new
interpreter with ``subprocess=True``), and checks through the git CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess as sp
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import fsck_quick, git, make_repo, uet, uet_forked

TOOLS = Path(__file__).parent / "tools"


def legacy_corpus() -> Path:
    """The legacy workstream corpus: ``$UET_LEGACY_CORPUS``, else next to the checkout
    (``../shared/corpus/legacy-workstreams``); the tests that read it skip when it is absent."""
    given = os.environ.get("UET_LEGACY_CORPUS")
    if given:
        return Path(given)
    return Path(__file__).resolve().parents[3] / "shared" / "corpus" / "legacy-workstreams"


CORPUS = legacy_corpus()


def tool(name: str) -> str:
    """Absolute path of a test tool script (tests/e2e/tools/NAME)."""
    return str(TOOLS / name)


def shared_dir(tmp_path: Path) -> Path:
    """A directory outside the repository that a test and its tools both use (a counter, a
    marker, a fake CLI). Tools run sandboxed with a private /tmp, so a repository using it
    names it in its uet.toml: ``config=sandbox_writable(shared)``."""
    d = tmp_path / "shared"
    d.mkdir(exist_ok=True)
    return d


def sandbox_writable(*paths: Path) -> str:
    """uet.toml lines that let the sandboxed tools see and write ``paths``."""
    return f"[sandbox]\nwritable = {json.dumps([str(p) for p in paths])}\n"


# For the tests of what happens to a tool's processes outside a sandbox (the process sweep):
# the sandbox's own PID namespace would end them before uet looks.
NO_SANDBOX = '[sandbox]\nmode = "none"\n'


def setup_repo(path: Path, *, files: dict[str, str] | None = None,
               workstreams: dict[str, dict[str, Any]] | None = None,
               config: str | None = None, branch: str = "main") -> Path:
    """A repository with ``files``, one YAML per workstream under workstreams/, and uet.toml,
    all in the first commit."""
    all_files = dict(files or {"README.md": "hello\n"})
    for ws_id, spec in (workstreams or {}).items():
        all_files[f"workstreams/{ws_id}.yaml"] = yaml.safe_dump({"id": ws_id, **spec},
                                                                sort_keys=False)
    if config is not None:
        all_files["uet.toml"] = config
    return make_repo(path, all_files, branch=branch)


def run(repo: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120, subprocess: bool = False,
        forked: bool = False) -> sp.CompletedProcess[str]:
    """``uet ARGS`` in ``repo``. ``forked``: in a child forked from this process, for a test
    that needs what a process of its own gives (its own subreaper flag and signal handlers,
    an exit of its own while the test watches from outside) but not a new interpreter's
    import; ``subprocess`` for the few that need the new interpreter."""
    full_env = {"UET_RETRY_BACKOFF": "0.05", **(env or {})}
    if forked and not subprocess:
        return uet_forked(*args, cwd=repo, env=full_env, timeout=timeout)
    return uet(*args, cwd=repo, env=full_env, timeout=timeout, subprocess=subprocess)


def run_ok(repo: Path, *args: str, code: int = 0, **kw: Any) -> sp.CompletedProcess[str]:
    proc = run(repo, *args, **kw)
    assert proc.returncode == code, (
        f"uet {' '.join(args)} exited {proc.returncode}, wanted {code}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def runs(repo: Path) -> list[str]:
    out = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/ledger/")
    return sorted(line.rsplit("/", 1)[1] for line in out.splitlines() if line)


def last_run(repo: Path) -> str:
    r = runs(repo)
    assert r, "no run recorded"
    return r[-1]


def states(repo: Path, run_id: str | None = None) -> dict[str, str]:
    """``{ws: state}`` from the state refs (refs/uet/<state>/RUN/WS), read with git; the run
    is the last one (``last_run``) unless given."""
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/uet/").splitlines()
    if not run_id:
        recorded = sorted(r.rsplit("/", 1)[1] for r in refs if r.startswith("refs/uet/ledger/"))
        assert recorded, "no run recorded"
        run_id = recorded[-1]
    found: dict[str, str] = {}
    for ref in refs:
        parts = ref.split("/")
        if len(parts) == 5 and parts[3] == run_id and parts[2] not in ("patches",):
            assert parts[4] not in found, f"{parts[4]} has two state refs"
            found[parts[4]] = parts[2]
    return found


def loose_refs(repo: Path, prefix: str) -> int:
    """How many loose ref files are under ``prefix`` (``refs/uet/candidates``): what a test
    waiting for uet to reach a point polls without starting a git process each time. Only for
    waiting; what the test then checks it reads with git."""
    return sum(1 for p in (repo / ".git" / prefix).rglob("*")
               if p.is_file() and not p.name.endswith(".lock"))


def ledger_subjects(repo: Path, run_id: str | None = None) -> list[str]:
    run_id = run_id or last_run(repo)
    return git(repo, "log", "--format=%s", "--reverse", f"refs/uet/ledger/{run_id}").splitlines()


def trailers(repo: Path, rev: str) -> dict[str, str]:
    out = git(repo, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    d: dict[str, str] = {}
    for line in out.splitlines():
        k, _, v = line.partition(": ")
        if k:
            d[k] = v
    return d


def landed_workstreams(repo: Path, branch: str = "main") -> list[str]:
    """Uet-Workstream trailers of the commits on ``branch``, oldest first."""
    out = git(repo, "log", "--reverse", "--format=%(trailers:key=Uet-Workstream,valueonly)",
              branch)
    return [line.strip() for line in out.splitlines() if line.strip()]


def show(repo: Path, rev_path: str) -> str:
    return git(repo, "show", rev_path)


def fsck_clean(repo: Path, *, uet_fsck: bool = True) -> None:
    proc = sp.run(["git", *fsck_quick(repo), "fsck", "--strict", "--no-progress"], cwd=repo,
                  capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stderr.lower(), proc.stderr
    if not uet_fsck:
        return
    u = run(repo, "fsck")
    assert u.returncode == 0, f"uet fsck: {u.stdout}{u.stderr}"


def checkout_fingerprint(repo: Path) -> str:
    """Everything of the user's checkout: every file's bytes and mode (outside .git), the
    index file's bytes, HEAD, and `git status --porcelain`."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(repo):
        dirs[:] = sorted(d for d in dirs if not (Path(root) == repo and d == ".git"))
        for f in sorted(files):
            p = Path(root) / f
            h.update(str(p.relative_to(repo)).encode())
            h.update(str(p.lstat().st_mode).encode())
            h.update(os.readlink(p).encode() if p.is_symlink() else p.read_bytes())
    h.update((repo / ".git" / "index").read_bytes())
    h.update((repo / ".git" / "HEAD").read_bytes())
    h.update(git(repo, "status", "--porcelain", "--untracked-files=all").encode())
    return h.hexdigest()


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
