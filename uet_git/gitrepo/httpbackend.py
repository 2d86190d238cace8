"""Smart HTTP for one repository through ``git http-backend`` (CGI), standard library only.

An HTTP server (``http.server``, one thread per request) admits exactly git's four smart
endpoints (``info/refs`` for either service, ``git-upload-pack``, ``git-receive-pack``) and
asks a policy (``Policy``, the caller's) before anything reaches git: a request without an
acceptable bearer token gets 401, a refused push gets 403. For a push the policy sees the ref
commands themselves: they are the first pkt-lines of the ``git-receive-pack`` body, parsed
here before the body is handed to git, so a refused push never reaches ``receive-pack`` and
writes nothing (no object, no ref).

The request body is decoded here (chunked transfer, which git uses for a body over
``http.postBuffer``, and gzip) and git reads it until EOF. Every git process gets
``gitcmd.SAFE_CONFIG`` (no hooks: a push does not run the served repository's hooks) plus the
caller's ``config``, passed as ``-c`` through the environment (``GIT_CONFIG_COUNT``: the
backend's children, ``receive-pack`` and ``upload-pack``, inherit it); the repository's own
config files are never written.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from uet_git.gitrepo.gitcmd import SAFE_CONFIG, GitError

ZERO_OIDS = frozenset({"0" * 40, "0" * 64})
MAX_COMMANDS = 10_000  # ref commands in one push; a worker pushes one
MAX_PKT = 65520  # git's LARGE_PACKET_MAX
_CHUNK = 1 << 16
_ENDPOINTS = {
    ("GET", "/info/refs"),
    ("POST", "/git-upload-pack"),
    ("POST", "/git-receive-pack"),
}
_SERVICES = {"git-upload-pack", "git-receive-pack"}
_OID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")


class Refused(Exception):
    """The policy's answer to a request it does not allow: an HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RefCommand:
    """One ``<old> <new> <ref>`` line of a push (old all-zero: create; new all-zero: delete)."""

    old: str
    new: str
    ref: str

    @property
    def creates(self) -> bool:
        return self.old in ZERO_OIDS and self.new not in ZERO_OIDS


class Policy(Protocol):
    """Who may do what. Each method returns an opaque principal (logged as REMOTE_USER) or
    raises ``Refused``."""

    def authenticate(self, authorization: str | None) -> str: ...

    def may_push(self, principal: str) -> None: ...

    def check_push(self, principal: str, commands: Sequence[RefCommand]) -> None: ...


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison (no early exit on the first differing byte)."""
    return hmac.compare_digest(a.encode(), b.encode())


# -- request bodies -----------------------------------------------------------------------

class _Body:
    """A request body as a stream: Content-Length or chunked, then optionally gunzipped."""

    def __init__(self, rfile: BinaryIO, headers: Mapping[str, str], limit: int) -> None:
        self._rfile = rfile
        self._limit = limit
        self._read_total = 0
        te = headers.get("Transfer-Encoding", "").lower()
        self._chunked = "chunked" in te
        self._left = 0 if self._chunked else int(headers.get("Content-Length") or 0)
        self._chunk_left = 0
        self._done = False
        enc = headers.get("Content-Encoding", "").lower()
        if enc not in ("", "identity", "gzip", "x-gzip"):
            raise Refused(415, f"unsupported Content-Encoding {enc!r}")
        self._gunzip = zlib.decompressobj(31) if "gzip" in enc else None
        self._buf = b""

    def _raw(self, n: int) -> bytes:
        if self._done:
            return b""
        if not self._chunked:
            data = self._rfile.read(min(n, self._left)) if self._left else b""
            self._left -= len(data)
            if not data:
                self._done = True
            return data
        if self._chunk_left == 0:
            line = self._rfile.readline(1024)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self._done = True
                return b""
            self._chunk_left = size
        data = self._rfile.read(min(n, self._chunk_left))
        if not data:
            raise Refused(400, "request body ended inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)  # the CRLF after the chunk
        return data

    def _more(self) -> bytes:
        while True:
            raw = self._raw(_CHUNK)
            self._read_total += len(raw)
            if self._read_total > self._limit:
                raise Refused(413, f"request body over {self._limit} bytes")
            if self._gunzip is None:
                return raw
            if not raw:
                return self._gunzip.flush()
            out = self._gunzip.decompress(raw)
            if out:
                return out

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes unless the body ends first."""
        while len(self._buf) < n:
            more = self._more()
            if not more:
                break
            self._buf += more
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def rest(self) -> Iterator[bytes]:
        if self._buf:
            yield self._buf
            self._buf = b""
        while more := self._more():
            yield more


def read_commands(body: _Body) -> tuple[list[RefCommand], bytes]:
    """The ref commands at the head of a receive-pack request and the raw bytes read (to be
    sent on to git unchanged). A signed push (``push-cert``) is refused: uet has no use for it
    and its commands sit inside the certificate."""
    raw = bytearray()
    commands: list[RefCommand] = []
    while True:
        head = body.read(4)
        raw += head
        if len(head) < 4:
            raise Refused(400, "push request ended before its flush packet")
        try:
            size = int(head, 16)
        except ValueError:
            raise Refused(400, "push request: bad pkt-line length") from None
        if size == 0:
            return commands, bytes(raw)
        if size < 4 or size > MAX_PKT:
            raise Refused(400, "push request: bad pkt-line length")
        payload = body.read(size - 4)
        raw += payload
        if len(payload) < size - 4:
            raise Refused(400, "push request ended inside a pkt-line")
        line = payload.split(b"\0", 1)[0].rstrip(b"\n").decode("utf-8", "replace")
        if line.startswith("shallow "):
            continue
        if line.startswith("push-cert"):
            raise Refused(403, "signed pushes are not accepted")
        parts = line.split(" ")
        if len(parts) != 3 or not _OID.match(parts[0]) or not _OID.match(parts[1]):
            raise Refused(400, f"push request: bad command {line[:80]!r}")
        commands.append(RefCommand(parts[0], parts[1], parts[2]))
        if len(commands) > MAX_COMMANDS:
            raise Refused(413, f"more than {MAX_COMMANDS} ref updates in one push")


# -- the CGI bridge -----------------------------------------------------------------------

def backend_env(git_dir: Path, config: Sequence[str]) -> dict[str, str]:
    """The environment every request's ``git http-backend`` shares."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "HTTP_"))}
    pairs = [kv.split("=", 1) for kv in (*SAFE_CONFIG, *config)]
    env.update({"GIT_PROJECT_ROOT": str(git_dir), "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_COUNT": str(len(pairs))})
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _drain(stream: BinaryIO, keep: list[bytes]) -> None:
    tail = b""
    for block in iter(lambda: stream.read(4096), b""):
        tail = (tail + block)[-4096:]
    keep.append(tail)


def _feed(stdin: BinaryIO, parts: Iterator[bytes], error: list[BaseException]) -> None:
    try:
        for part in parts:
            stdin.write(part)
    except BrokenPipeError:
        pass  # git stopped reading: its answer says why
    except BaseException as exc:  # a bad body (Refused) or the client went away
        error.append(exc)
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


class _Handler(BaseHTTPRequestHandler):
    server: GitHTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: the end of a body is EOF
    timeout = 120  # seconds of silence on the socket before the request is dropped

    def log_message(self, format: str, *args: object) -> None:
        self.server.log(f"{self.address_string()} {format % args}")

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _refuse(self, status: int, message: str) -> None:
        self.server.log(f"{self.address_string()} refused {status}: {message}")
        data = (message + "\n").encode()
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="uet"')
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, url.query
        body: _Body | None = None
        try:
            if (method, path) not in _ENDPOINTS:
                raise Refused(404, f"{path}: not a smart-HTTP git endpoint")
            service = path[1:] if method == "POST" else _query_service(query)
            if method == "POST":
                body = _Body(self.rfile, self.headers, self.server.max_body)
            principal = self.server.policy.authenticate(self.headers.get("Authorization"))
            head = b""
            if service == "git-receive-pack":
                self.server.policy.may_push(principal)
                if body is not None:
                    commands, head = read_commands(body)
                    self.server.policy.check_push(principal, commands)
        except Refused as r:
            if body is not None:
                _discard(body)  # read it all: the client sends its body before the answer
            self._refuse(r.status, r.message)
            return
        self._cgi(method, path, query, service, principal, head, body)

    def _cgi(self, method: str, path: str, query: str, service: str, principal: str,
             head: bytes, body: _Body | None) -> None:
        env = dict(self.server.env)
        env.update({"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                    "REMOTE_USER": principal, "REMOTE_ADDR": self.client_address[0],
                    "CONTENT_TYPE": self.headers.get("Content-Type", "")})
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.Popen(["git", "http-backend"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdin and proc.stdout and proc.stderr
        errors: list[BaseException] = []
        err_tail: list[bytes] = []
        parts = iter(()) if body is None else _chain(head, body.rest())
        feeder = threading.Thread(target=_feed, args=(proc.stdin, parts, errors), daemon=True)
        drainer = threading.Thread(target=_drain, args=(proc.stderr, err_tail), daemon=True)
        feeder.start()
        drainer.start()
        try:
            status, headers = _cgi_headers(proc.stdout)
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            for block in iter(lambda: proc.stdout.read1(_CHUNK), b""):  # type: ignore[union-attr]
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away; git's exit is all that is left
        finally:
            feeder.join()
            proc.stdout.close()
            rc = proc.wait()
            drainer.join()
            if rc != 0 or errors:
                why = errors[0] if errors else err_tail[0].decode(errors="replace").strip()
                self.server.log(f"{self.address_string()} {service}: git http-backend exit "
                                f"{rc}: {str(why)[-300:]}")


def _chain(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _discard(body: _Body) -> None:
    try:
        for _ in body.rest():
            pass
    except (Refused, OSError, ValueError, zlib.error):
        pass


def _query_service(query: str) -> str:
    fields = dict(p.partition("=")[::2] for p in query.split("&") if p)
    service = fields.get("service", "")
    if service not in _SERVICES:
        raise Refused(403, "only smart HTTP: info/refs?service=git-upload-pack|git-receive-pack")
    return service


def _cgi_headers(stdout: BinaryIO) -> tuple[int, list[tuple[str, str]]]:
    status = 200
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline(8192)
        if not line:
            raise GitError("git http-backend ended before its headers")
        text = line.decode("latin-1").rstrip("\r\n")
        if not text:
            return status, headers
        key, _, value = text.partition(":")
        if key.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        else:
            headers.append((key.strip(), value.strip()))


class GitHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving one repository; ``serve_forever`` in a thread."""

    # close() waits for the requests in flight (a push half applied is git's to finish); a
    # silent client cannot hold it up longer than the handler's socket timeout.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], git_dir: Path, policy: Policy,
                 config: Sequence[str] = (), log: Callable[[str], None] | None = None,
                 max_body: int = 1 << 31) -> None:
        self.policy = policy
        self.env = backend_env(git_dir, config)
        self.max_body = max_body
        self._log = log
        super().__init__(address, _Handler)

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    # A listen backlog of 5 (socketserver's default) refuses connections when hundreds of
    # workers push at once; the kernel caps what is asked.
    request_queue_size = 1024
