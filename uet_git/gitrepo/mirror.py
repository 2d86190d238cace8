"""A worker machine's mirror of a repository it reaches only by URL, and the few transfers a
distributed run makes: fetch one commit by id, push one commit to a ref that must not exist yet.

The mirror is a bare repository under a cache directory, created once and then only fetched
into (never re-cloned); its objects stay reachable through the worktrees made from it and the
refs uet writes below ``refs/uet/``. Every git command here runs with uet's safe prefix
(``gitcmd``): no hooks, no auto-gc. A bearer token (``uet serve``) reaches git as an
``http.extraHeader`` through the environment of that one git process (``GIT_CONFIG_COUNT``):
never on a command line (``ps`` shows those to every local user), never in a config file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from uet_git.gitrepo.filters import config_env
from uet_git.gitrepo.gitcmd import GitError, run_git
from uet_git.gitrepo.remote import ls_remote
from uet_git.gitrepo.repo import Repo


def _auth(token: str | None) -> dict[str, str] | None:
    """The environment that gives git the bearer token (after any GIT_CONFIG_* already set)."""
    if not token:
        return None
    return config_env([("http.extraHeader", f"Authorization: Bearer {token}")], os.environ)


def _one_line(stderr: bytes, what: str) -> str:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith(("fatal:", "error:", "!"))),
                 lines[-1] if lines else "failed")
    return f"{what}: {first.removeprefix('fatal: ').removeprefix('error: ')}"


def open_mirror(path: Path) -> Repo:
    """The bare mirror at ``path``, created when missing (the caller holds the machine's lock
    on it). Objects received are checked (``transfer.fsckObjects``): a worker takes nothing a
    strict ``git fsck`` would reject."""
    if not (path / "HEAD").is_file():
        path.mkdir(parents=True, exist_ok=True)
        run_git(["init", "--quiet", "--bare", str(path)], cwd=path)
        for key, value in (("transfer.fsckObjects", "true"), ("gc.auto", "0"),
                           ("core.logAllRefUpdates", "false")):
            run_git(["config", key, value], cwd=path)
    return Repo.open(path, bare_ok=True)


def fetch_commits(repo: Repo, url: str, oids: Sequence[str], *, token: str | None = None) -> None:
    """Fetch exactly these commits (and what they need) from ``url`` into ``repo``'s object
    store; no ref moves. Commits already present cost nothing."""
    missing = [o for o in oids if repo.rev_parse(o) is None]
    if not missing:
        return
    proc = repo.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                    "--no-auto-gc", url, *missing, env=_auth(token), check=False)
    if proc.returncode != 0:
        raise GitError(_one_line(proc.stderr, f"git fetch {url} {missing[0][:12]}"))


def fetch_refs(repo: Repo, url: str, refs: Sequence[str], *, token: str | None = None
               ) -> dict[str, str]:
    """Copy the remote's ``refs`` to the same names here (forced: they are the remote's to
    name, e.g. inbox refs that never move); returns ``{ref: oid}`` of those that exist."""
    if not refs:
        return {}
    specs = "".join(f"+{r}:{r}\n" for r in refs)
    proc = repo.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
                    "--no-auto-gc", "--stdin", url, input=specs.encode(), env=_auth(token),
                    check=False)
    if proc.returncode != 0:
        raise GitError(_one_line(proc.stderr, f"git fetch {url}"))
    got = {r: repo.read_ref(r) for r in refs}
    return {r: o for r, o in got.items() if o}


def push_new_ref(repo: Repo, url: str, oid: str, ref: str, *, token: str | None = None
                 ) -> bool:
    """Create ``ref`` = ``oid`` on ``url``, only if the ref does not exist there yet
    (``--force-with-lease=REF:``): True when created, False when it already existed (with any
    value: the caller reads it). Other failures raise GitError."""
    proc = repo.git("push", "--quiet", "--no-verify", "--porcelain",
                    f"--force-with-lease={ref}:", url, f"{oid}:{ref}", env=_auth(token),
                    check=False)
    if proc.returncode == 0:
        return True
    out = proc.stdout.decode(errors="replace")
    if any(ln.startswith("!") and ref in ln for ln in out.splitlines()):
        return False  # stale info / already exists: the ref is someone else's attempt
    raise GitError(_one_line(proc.stderr + proc.stdout, f"git push {url} {ref}"))


def push_refs(repo: Repo, url: str, updates: Sequence[tuple[str, str | None]], *,
              token: str | None = None) -> None:
    """Set each ``ref`` on ``url`` to ``oid`` (None: delete it) in one push, fast-forward only
    for updates. For the coordinator: the integration tip workers start from, pruning."""
    if not updates:
        return
    specs = [f"{oid}:{ref}" if oid else f":{ref}" for ref, oid in updates]
    proc = repo.git("push", "--quiet", "--no-verify", "--porcelain", url,
                    *specs, env=_auth(token), check=False)
    if proc.returncode != 0:
        raise GitError(_one_line(proc.stderr + proc.stdout, f"git push {url}"))


def remote_refs(repo: Repo, url: str, *patterns: str, token: str | None = None
                ) -> dict[str, str]:
    """``{ref: oid}`` of ``url``'s refs matching ``patterns``."""
    return ls_remote(url, *patterns, repo=repo, env=_auth(token))
