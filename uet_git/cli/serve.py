"""`uet serve [--bind HOST:PORT] [--run RUN]...`: this repository over smart HTTP for workers."""

from __future__ import annotations

import ipaddress
import signal
import threading
from types import FrameType

import click

from uet_git.commands.serve import parse_bind, start_server
from uet_git.gitrepo import Repo
from uet_git.ledger.layout import inbox_prefix
from uet_git.ledger.query import resolve_run


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--bind", "bind", default="127.0.0.1:0", show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0: a free one, printed).")
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="Issue a push token for RUN (a unique prefix works); repeatable.")
def cmd(bind: str, runs: tuple[str, ...]) -> None:
    """Serve this repository to remote workers over smart HTTP (git http-backend) until
    interrupted. Every token may fetch; a run's token (--run) may also create that run's inbox
    refs (refs/uet/inbox/RUN/WS/N) and nothing else. Without --run only a fetch token is
    printed. Plain HTTP: off loopback, put it behind a TLS proxy or use ssh."""
    host, _ = parse_bind(bind)
    repo = Repo.open(".", bare_ok=True)
    resolved = [resolve_run(repo, r) for r in runs]
    if not _loopback(host):
        click.echo(f"uet serve: warning: plain HTTP on {host}: tokens and code cross the "
                   "network in clear; put a TLS proxy in front or use ssh", err=True)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    server = start_server(repo, bind)
    try:
        click.echo(f"serving {repo.common_dir} at {server.url}")
        click.echo(f"fetch token: {server.issue_read_token()}")
        for run in resolved:
            click.echo(f"run {run} token: {server.issue_token(run)} "
                       f"(fetch; push {inbox_prefix(run)}WS/N only)")
        if not resolved:
            click.echo("no push token: restart with --run RUN to let a run's workers push")
        click.echo(f"use: git -c http.extraHeader='Authorization: Bearer TOKEN' "
                   f"fetch {server.url} ...")
        previous = signal.signal(signal.SIGTERM, _stop)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        server.close()
