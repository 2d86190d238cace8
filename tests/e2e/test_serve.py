"""`uet serve`: the repository over smart HTTP (git http-backend) with a bearer token per run.
An in-process server thread, real git clients as subprocesses."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess as sp
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import git, make_repo, module_git_env, uet
from tests.e2e.helpers import fsck_clean
from tests.e2e.started import start_uet, wait_until
from tests.hooks.ledgerkit import scripted_run, uet_commit
from uet_git.commands.serve import Server, start_server
from uet_git.gitrepo import Repo
from uet_git.ledger.layout import inbox_ref, ledger_ref, patch_ref

OTHER_RUN = "20261125-101502-3f2a"


@dataclass
class Served:
    path: Path
    run: str
    base: str
    server: Server
    token: str
    root: Path  # the module's template: A (the served repository) and W (a worker's clone)


def client(*args: str, token: str | None, cwd: Path, extra: tuple[str, ...] = ()
           ) -> sp.CompletedProcess[str]:
    """A git client: the token in the Authorization header, never a prompt."""
    auth = ("-c", f"http.extraHeader=Authorization: Bearer {token}") if token else ()
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"}
    return sp.run(["git", *auth, *extra, *args], cwd=cwd, capture_output=True, text=True,
                  env=env, timeout=60, stdin=sp.DEVNULL)


def all_refs(path: Path) -> str:
    return git(path, "for-each-ref", "--format=%(objectname) %(refname)")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One recorded run for the whole module (copied per test: recording it is the slow
    part), and a plain clone of it for the workers."""
    root = tmp_path_factory.mktemp("serve-template")
    with module_git_env():
        path = make_repo(root / "A")
        s, _ = scripted_run(path)
        git(root, "clone", "-q", str(path), str(root / "W"))
    return root, s.run, s.base


@pytest.fixture
def served(tmp_path: Path, template: tuple[Path, str, str]) -> Iterator[Served]:
    root, run, base = template
    path = tmp_path / "A"
    shutil.copytree(root / "A", path, symlinks=True)
    with start_server(Repo.open(path), "127.0.0.1:0") as server:
        yield Served(path, run, base, server, server.issue_token(run), root)


def _worker_clone(sv: Served, tmp_path: Path) -> Path:
    """The worker's repository (a copy of a clone: what it pushes is only its new commit)."""
    c = tmp_path / "W"
    shutil.copytree(sv.root / "W", c, symlinks=True)
    return c


def test_fetch_over_serve_with_a_token(served: Served, tmp_path: Path):
    c = tmp_path / "C"
    r = client("clone", "-q", served.server.url, str(c), token=served.token, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert git(c, "rev-parse", "HEAD") == served.base
    # A worker fetches an exact commit by SHA (here the integration tip, a ledger ref target)
    tip = git(served.path, "rev-parse", ledger_ref(served.run))
    r = client("fetch", "-q", served.server.url, tip, token=served.server.issue_read_token(),
               cwd=c)
    assert r.returncode == 0, r.stderr
    assert git(c, "cat-file", "-t", tip) == "commit"


@pytest.mark.parametrize("token", [None, "uet_not-a-token", "Basic"])
def test_no_or_unknown_token_is_refused(served: Served, tmp_path: Path, token: str | None):
    r = client("ls-remote", served.server.url, token=token, cwd=tmp_path)
    assert r.returncode != 0
    assert "401" in r.stderr or "Authentication failed" in r.stderr or "Username" in r.stderr


def test_push_of_an_inbox_ref(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    oid = _make_in_clone(c, served.run, "b", 2)
    ref = inbox_ref(served.run, "b", 2)
    r = client("push", "-q", served.server.url, f"{oid}:{ref}", token=served.token, cwd=c)
    assert r.returncode == 0, r.stderr
    assert git(served.path, "rev-parse", ref) == oid
    fsck_clean(served.path)


def test_chunked_push(served: Served, tmp_path: Path):
    """A body over http.postBuffer goes chunked: decoded here, git still reads it to EOF."""
    c = _worker_clone(served, tmp_path)
    oid = _make_in_clone(c, served.run, "b", 2, size=4000)
    ref = inbox_ref(served.run, "b", 2)
    r = client("push", "-q", served.server.url, f"{oid}:{ref}", token=served.token, cwd=c,
               extra=("-c", "http.postBuffer=1024"))
    assert r.returncode == 0, r.stderr
    assert git(served.path, "rev-parse", ref) == oid


def _make_in_clone(c: Path, run: str, ws: str, n: int, size: int = 0) -> str:
    """A patch commit with the trailers an inbox ref needs, made in the worker's clone (in
    process: fifty of them must be quick) and referenced by nothing there."""
    body = os.urandom(size // 2).hex() if size else f"{ws} attempt {n} {os.urandom(4).hex()}"
    repo = Repo.open(c)
    head = repo.rev_parse("HEAD")
    assert head is not None
    return uet_commit(repo, head, {f"{ws}.txt": body + "\n"}, ws, run, attempt=n)


def _refused(sv: Served, c: Path, specs: list[str], token: str | None = None) -> None:
    before = all_refs(sv.path)
    r = client("push", "-q", "--force", sv.server.url, *specs, token=token or sv.token, cwd=c)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "403" in r.stderr, r.stderr
    assert all_refs(sv.path) == before
    for spec in specs:
        oid = spec.split(":")[0].lstrip("+")
        if oid:
            got = sp.run(["git", "cat-file", "-e", oid], cwd=sv.path, capture_output=True)
            assert got.returncode != 0, f"{oid} was written"


OUTSIDE_THE_INBOX = ("refs/heads/main", "refs/heads/new-branch", "ledger", "patch", "state",
                     "other-run-inbox", "inbox-of-no-plan-format", "refs/tags/v1")


def test_pushes_outside_the_run_inbox_are_refused(served: Served, tmp_path: Path):
    """Each target pushed on its own, one after the other, to one server (a refused push
    changes nothing there: `_refused` checks every ref and object is as before)."""
    c = _worker_clone(served, tmp_path)
    run = served.run
    refs = {
        "ledger": ledger_ref(run),
        "patch": patch_ref(run, "b", 2),
        "state": f"refs/uet/quarantined/{run}/b",
        "other-run-inbox": inbox_ref(OTHER_RUN, "b", 2),
        "inbox-of-no-plan-format": f"refs/uet/inbox/{run}/b/02",
    }
    for target in OUTSIDE_THE_INBOX:
        oid = _make_in_clone(c, run, "b", 2)  # a commit of its own: never written before
        _refused(served, c, [f"{oid}:{refs.get(target, target)}"])


def test_one_bad_ref_refuses_the_whole_push(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    oid = _make_in_clone(c, served.run, "b", 2)
    _refused(served, c, [f"{oid}:{inbox_ref(served.run, 'b', 2)}", f"{oid}:refs/heads/x"])


def test_an_inbox_ref_is_never_moved_or_deleted(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    first = _make_in_clone(c, served.run, "b", 2)
    ref = inbox_ref(served.run, "b", 2)
    r = client("push", "-q", served.server.url, f"{first}:{ref}", token=served.token, cwd=c)
    assert r.returncode == 0, r.stderr
    second = _make_in_clone(c, served.run, "b", 2)
    _refused(served, c, [f"+{second}:{ref}"])
    before = all_refs(served.path)
    r = client("push", "-q", served.server.url, f":{ref}", token=served.token, cwd=c)
    assert r.returncode != 0 and "403" in r.stderr
    assert all_refs(served.path) == before


def test_a_fetch_token_pushes_nothing(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    oid = _make_in_clone(c, served.run, "b", 2)
    read = served.server.issue_read_token()
    before = all_refs(served.path)
    r = client("push", "-q", served.server.url, f"{oid}:{inbox_ref(served.run, 'b', 2)}",
               token=read, cwd=c)
    assert r.returncode != 0 and "403" in r.stderr, r.stderr
    assert all_refs(served.path) == before


def test_another_runs_token_cannot_push_this_runs_inbox(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    oid = _make_in_clone(c, served.run, "b", 2)
    other = served.server.issue_token(OTHER_RUN)
    _refused(served, c, [f"{oid}:{inbox_ref(served.run, 'b', 2)}"], token=other)


def test_a_revoked_token_is_refused(served: Served, tmp_path: Path):
    served.server.revoke(served.run)
    r = client("ls-remote", served.server.url, token=served.token, cwd=tmp_path)
    assert r.returncode != 0


def test_fifty_concurrent_pushes(served: Served, tmp_path: Path):
    c = _worker_clone(served, tmp_path)
    jobs = [(ws, n) for ws in ("a", "b", "c", "d", "e") for n in range(2, 12)]
    oids = {job: _make_in_clone(c, served.run, *job) for job in jobs}

    def push(job: tuple[str, int]) -> sp.CompletedProcess[str]:
        ref = inbox_ref(served.run, *job)
        return client("push", "-q", served.server.url, f"{oids[job]}:{ref}",
                      token=served.token, cwd=c)

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(push, jobs))
    assert [r.stderr for r in results if r.returncode != 0] == []
    got = git(served.path, "for-each-ref", "--format=%(refname) %(objectname)",
              f"refs/uet/inbox/{served.run}/")
    assert len(got.splitlines()) == 50
    for job, oid in oids.items():
        assert f"{inbox_ref(served.run, *job)} {oid}" in got
    fsck_clean(served.path)


def test_dumb_http_and_other_paths_are_not_served(served: Served, tmp_path: Path):
    r = client("-c", "protocol.version=0", "ls-remote", served.server.url + "nothing/",
               token=served.token, cwd=tmp_path)
    assert r.returncode != 0


def test_bad_bind_is_one_line(tmp_path: Path):
    make_repo(tmp_path / "A")
    r = uet("serve", "--bind", "nonsense", cwd=tmp_path / "A")
    assert r.returncode == 2 or r.returncode == 1
    assert "bad --bind 'nonsense'" in r.stderr and "Traceback" not in r.stderr


def test_serve_cli_prints_url_and_token_and_stops_on_sigterm(tmp_path: Path):
    path = make_repo(tmp_path / "A")
    s, _ = scripted_run(path)
    with start_uet(path, "serve", "--run", s.run[:10]) as proc:
        wait_until(lambda: proc.output()[0].count("\n") >= 3, "the URL and token printed",
                   started=proc)
        lines = proc.output()[0].splitlines()
        url = lines[0].split(" at ")[1].strip()
        assert url.startswith("http://127.0.0.1:")
        token = lines[2].split(" token: ")[1].split()[0]
        c = tmp_path / "W"
        r = client("clone", "-q", url, str(c), token=token, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        oid = _make_in_clone(c, s.run, "b", 2)
        r = client("push", "-q", url, f"{oid}:{inbox_ref(s.run, 'b', 2)}", token=token, cwd=c)
        assert r.returncode == 0, r.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.output()


def test_status_remote_reads_a_served_repository_with_a_token(served: Served, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    """The token through git's environment (not argv, which other local users can read)."""
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
    r = uet("status", "--remote", served.server.url, cwd=tmp_path)
    assert r.returncode != 0 and "needs a token" in r.stderr and "Traceback" not in r.stderr
    for k, v in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                 "GIT_CONFIG_VALUE_0": f"Authorization: Bearer {served.token}"}.items():
        monkeypatch.setenv(k, v)
    r = uet("status", "--remote", served.server.url, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "a  committed" in r.stdout and "e  dropped" in r.stdout


def test_gzipped_fetch_request(served: Served, tmp_path: Path):
    """A fetch request over 1 KB (many "have" lines) comes gzipped: decoded here for git."""
    c = _worker_clone(served, tmp_path)
    repo = Repo.open(c)
    tip = served.base
    for i in range(60):  # local commits the server lacks: each is a "have" line
        tip = uet_commit(repo, tip, {"local.txt": f"{i}\n"}, "a", served.run)
    git(c, "update-ref", "refs/heads/local", tip)
    new = uet_commit(served_repo(served), served.base, {"new.txt": "n\n"}, "a", served.run)
    git(served.path, "update-ref", "refs/heads/new", new)
    r = client("fetch", "-q", served.server.url, "refs/heads/new", token=served.token, cwd=c,
               extra=("-c", "protocol.version=0"))
    assert r.returncode == 0, r.stderr
    assert git(c, "rev-parse", "FETCH_HEAD") == new


def served_repo(sv: Served) -> Repo:
    return Repo.open(sv.path)
