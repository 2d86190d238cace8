"""Talking to another repository: list its refs, fetch objects into a private namespace, push
many ref updates as one atomic compare-and-swap.

``ls_remote`` needs no local repository (``uet status --remote URL`` reads states from ref
names without cloning). ``fetch_into`` writes only below a namespace the caller names (never
the refs it will later move), so ancestry can be checked against local objects before anything
visible changes. ``push_atomic`` sends every update with an explicit
``--force-with-lease=<ref>:<expected>``: the remote applies all of them or none (``--atomic``),
and only if each ref still holds what the caller saw.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uet_git.gitrepo.gitcmd import GitError, run_git
from uet_git.gitrepo.repo import Repo


@dataclass(frozen=True)
class PushUpdate:
    """Set ``ref`` on the remote to ``new`` (None: delete it) if it now holds ``expected``
    (None: it must not exist)."""

    ref: str
    new: str | None
    expected: str | None


_AUTH_WORDS = ("could not read Username", "Authentication failed", "returned error: 401")


def _one_line(proc_stderr: bytes, what: str) -> str:
    lines = [ln.strip() for ln in proc_stderr.decode(errors="replace").splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith(("fatal:", "error:"))),
                 lines[0] if lines else "failed")
    msg = f"{what}: {first.removeprefix('fatal: ').removeprefix('error: ')}"
    if any(w in first for w in _AUTH_WORDS):
        msg += (" (a `uet serve` URL needs a token: git config http.<URL>.extraHeader "
                "'Authorization: Bearer TOKEN')")
    return msg


def ls_remote(remote: str, *patterns: str, repo: Repo | None = None,
              env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{ref: oid}`` of the remote's refs matching ``patterns`` (git's ``ls-remote`` glob
    rules); ``remote`` is a URL, or a remote's name when ``repo`` is given. ``env``: extra
    environment for git (a bearer token's ``GIT_CONFIG_*``)."""
    cwd: str | os.PathLike[str] = repo.workdir if repo is not None else Path.cwd()
    proc = run_git(["ls-remote", "--refs", remote, *patterns], cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        raise GitError(_one_line(proc.stderr, f"git ls-remote {remote}"))
    out: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        oid, _, ref = line.partition("\t")
        if ref:
            out[ref] = oid
    return out


def fetch_into(repo: Repo, remote: str, refs: Sequence[str], namespace: str) -> dict[str, str]:
    """Fetch the remote's ``refs`` to ``<namespace><ref without 'refs/'>`` (forced: the
    namespace is the caller's scratch space); returns ``{remote ref: oid fetched}``."""
    if not refs:
        return {}
    if not namespace.startswith("refs/") or not namespace.endswith("/"):
        raise GitError(f"fetch namespace {namespace!r}: expected refs/.../")
    specs = "".join(f"+{r}:{namespace}{r.removeprefix('refs/')}\n" for r in refs)
    proc = repo.git("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc",
                    "--stdin", remote, input=specs.encode(), check=False)
    if proc.returncode != 0:
        raise GitError(_one_line(proc.stderr, f"git fetch {remote}"))
    got = repo.list_refs(namespace)
    return {"refs/" + k.removeprefix(namespace): v for k, v in got.items()}


def push_atomic(repo: Repo, remote: str, updates: Sequence[PushUpdate]) -> None:
    """Apply every update on the remote in one atomic push, each only if the remote ref still
    holds its ``expected`` value; GitError (nothing changed there) otherwise."""
    if not updates:
        return
    args = ["push", "--atomic", "--quiet", "--no-verify", "--porcelain"]
    specs = []
    for u in updates:
        args.append(f"--force-with-lease={u.ref}:{u.expected or ''}")
        specs.append(f"{u.new}:{u.ref}" if u.new is not None else f":{u.ref}")
    proc = repo.git(*args, remote, *specs, check=False)
    if proc.returncode != 0:
        rejected = [ln for ln in proc.stdout.decode(errors="replace").splitlines()
                    if ln.startswith("!")]
        why = rejected[0].split("\t", 1)[-1] if rejected else ""
        msg = _one_line(proc.stderr, f"git push --atomic {remote}")
        raise GitError(f"{msg}{' (' + why.strip() + ')' if why else ''}; nothing was pushed")

