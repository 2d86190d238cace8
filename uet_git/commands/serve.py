"""`uet serve`: the repository over smart HTTP for remote workers, with a bearer token per run.

What a token may do (``Access``): every valid token may fetch anything (workers fetch the
base and candidates by SHA); a run's token may also push, and only to create inbox refs of
that run (``refs/uet/inbox/<run>/WS/N``, ``ledger.layout.inbox_ref``): never another run's,
never a branch, a ledger, a state or a patch ref, never a delete, never a move (an inbox ref
is created once). A push naming anything else is refused whole (403) before git sees it, so
nothing is written. No token or an unknown one: 401. Tokens live in this process only
(``secrets``, 256 bits) and are compared in constant time.

Settings for many workers pushing at once, given to the served git as ``-c`` (the user's
config files are not touched): no automatic gc after a push (``receive.autogc=false``,
``gc.auto=0``: it would pack refs under the next pushes), a patient ``packed-refs`` lock
(``core.packedRefsTimeout``), durable refs (``core.fsync``, as the ledger's own), and the
pushed objects checked (``receive.fsckObjects``: a worker's commit must not break
``git fsck --strict`` here).

The server binds only to the address given; plain HTTP: off loopback put it behind a TLS
proxy or use ssh (docs/distributed.md, "Transport").
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from uet_git.errors import UetError
from uet_git.gitrepo.httpbackend import GitHTTPServer, RefCommand, Refused, bearer, same_secret
from uet_git.gitrepo.repo import Repo
from uet_git.ledger.layout import check_run_id, inbox_prefix, parse_ref

SERVE_CONFIG = (
    "http.uploadpack=true",
    "http.receivepack=true",
    "receive.autogc=false",
    "gc.auto=0",
    "core.packedRefsTimeout=10000",  # ms; git's default is 1 s
    "core.filesRefLockTimeout=1000",  # ms; git's default is 100 ms
    "core.fsync=committed,reference",
    "receive.fsckObjects=true",
    "receive.denyDeletes=true",
    "receive.denyNonFastForwards=true",
    # Workers fetch exact commits (a run's base, a published candidate) by SHA; every token may
    # read the whole repository anyway, so no reachability walk is needed.
    "uploadpack.allowAnySHA1InWant=true",
)
READ_ONLY = "read"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Access:
    """The tokens issued and what each may do (the ``httpbackend.Policy`` of a server)."""

    _tokens: dict[str, str] = field(default_factory=dict)  # sha256(token) -> run or READ_ONLY
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, scope: str) -> str:
        token = "uet_" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[_digest(token)] = scope
        return token

    def revoke(self, scope: str) -> int:
        """Forget every token of ``scope`` (a run id, or ``READ_ONLY``); how many there were."""
        with self._lock:
            gone = [d for d, s in self._tokens.items() if s == scope]
            for d in gone:
                del self._tokens[d]
        return len(gone)

    def authenticate(self, authorization: str | None) -> str:
        token = bearer(authorization)
        if token is None:
            raise Refused(401, "uet serve: a bearer token is required "
                          "(git -c http.extraHeader='Authorization: Bearer TOKEN')")
        # Compared with every issued token's digest in constant time, all of them whatever
        # matches: neither where a comparison stops nor which token matched shows in timing.
        digest = _digest(token)
        with self._lock:
            issued = list(self._tokens.items())
        scope = None
        for known, its_scope in issued:
            if same_secret(digest, known):
                scope = its_scope
        if scope is None:
            raise Refused(401, "uet serve: unknown token")
        return scope if scope == READ_ONLY else f"run:{scope}"

    def may_push(self, principal: str) -> None:
        if not principal.startswith("run:"):
            raise Refused(403, "uet serve: this token may fetch only")

    def check_push(self, principal: str, commands: Sequence[RefCommand]) -> None:
        self.may_push(principal)
        run = principal.removeprefix("run:")
        # No command at all is git's probe before a chunked push (a lone flush packet): it
        # changes nothing and must pass, or every push over http.postBuffer fails.
        for c in commands:
            why = _refusal(run, c)
            if why:
                raise Refused(403, f"uet serve: {c.ref}: {why}; nothing was pushed")


def _refusal(run: str, c: RefCommand) -> str | None:
    p = parse_ref(c.ref)
    if p is None or p.kind != "inbox":
        return f"this token may push only {inbox_prefix(run)}WS/N"
    if p.run != run:
        return f"this token may push only {inbox_prefix(run)}WS/N, not run {p.run}'s"
    if not c.creates:
        return "an inbox ref is created once, never moved or deleted"
    return None


class Server:
    """A running ``uet serve``: ``url``, ``issue_token(run)``, ``close()``."""

    def __init__(self, repo: Repo, bind: str, log: Callable[[str], None] | None = None) -> None:
        host, port = parse_bind(bind)
        self.repo = repo
        self.access = Access()
        try:
            self._http = GitHTTPServer((host, port), repo.common_dir, self.access,
                                       config=SERVE_CONFIG, log=log)
        except OSError as exc:
            raise UetError(f"uet serve: cannot bind {bind}: {exc.strerror or exc}") from None
        bound_host, bound_port = self._http.server_address[:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else str(bound_host)
        self.url = f"http://{shown}:{bound_port}/"
        self._thread = threading.Thread(target=self._http.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="uet-serve", daemon=True)
        self._thread.start()

    def issue_token(self, run_id: str) -> str:
        """A token that may fetch anything and push only ``refs/uet/inbox/<run_id>/...``."""
        return self.access.issue(check_run_id(run_id))

    def issue_read_token(self) -> str:
        """A token that may fetch anything and push nothing."""
        return self.access.issue(READ_ONLY)

    def revoke(self, run_id: str) -> int:
        """Forget ``run_id``'s tokens (the run finished): its workers can no longer push."""
        return self.access.revoke(run_id)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) into its parts; one-line UetError otherwise."""
    host, sep, port = bind.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UetError(f"uet serve: bad --bind {bind!r}: expected HOST:PORT "
                       "(e.g. 127.0.0.1:0 for a free port on loopback)")
    return host, int(port)


def start_server(repo: Repo, bind: str = "127.0.0.1:0",
                 log: Callable[[str], None] | None = None) -> Server:
    """Serve ``repo`` at ``bind`` in a background thread (``127.0.0.1:0``: a free port)."""
    return Server(repo, bind, log=log)
