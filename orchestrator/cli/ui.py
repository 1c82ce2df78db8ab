"""``orchestrator ui``: serve the live web dashboard (docs/ui.md).

It reads through :class:`orchestrator.client.Client` with the same settings as every command
(use the watcher's credentials: the dashboard only reads, unless ``--allow-cancel``, which needs
the submitter's). The socket is bound before the startup line is printed, so ``--port 0`` picks
a free port and the line names it. uvicorn's access log is off: a first request's
``?token=`` must never reach a log.

Exit codes: 0 after Ctrl-C/SIGTERM, 1 the port cannot be bound, 2 bad usage (a token missing
where one is required, unreadable token file, invalid settings).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import click

from orchestrator.cli.common import BadInput, Failure, cli_settings
from orchestrator.errors import ConfigError
from orchestrator.ui.options import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    UiOptions,
    check_options,
    resolve_token,
)

GRACEFUL_SHUTDOWN_S = 3
"""Open event streams are given this long to end when the dashboard stops."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); ``Failure`` if taken."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise Failure(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address to listen on; off loopback a token is required.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port (0: any free one; the startup line names it).")
@click.option("--allow-cancel", is_flag=True,
              help="Show a cancel button on unfinished jobs (needs a token and the "
                   "submitter's Redis credentials).")
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help=f"File holding the access token. Env: {TOKEN_FILE_ENV}, or the token "
                   f"itself in {TOKEN_ENV}.")
@click.option("--new-token", is_flag=True,
              help="Make a random access token for this run (printed in the startup URL).")
def ui(host: str, port: int, allow_cancel: bool, token_file: Path | None,
       new_token: bool) -> None:
    """Serve the live web dashboard: jobs, one job with its charts, workers, rejections.

    Read-only unless --allow-cancel. Prints `dashboard: http://HOST:PORT/` once listening;
    Ctrl-C stops it.
    """
    settings = cli_settings()
    try:
        token, generated = resolve_token(token_file, os.environ, new_token=new_token)
        options = UiOptions(host=host, port=port, token=token, allow_cancel=allow_cancel,
                            token_generated=generated)
        check_options(options)
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc
    import uvicorn  # noqa: PLC0415 - keep `orchestrator --help` fast

    from orchestrator.client import Client  # noqa: PLC0415
    from orchestrator.ui.app import create_app  # noqa: PLC0415

    sock = bind(host, port)
    options = UiOptions(host=host, port=sock.getsockname()[1], token=token,
                        allow_cancel=allow_cancel, token_generated=generated)
    app = create_app(Client(settings), options)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            server_header=False, proxy_headers=True,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    click.echo(f"dashboard: {options.startup_url()}")
    if allow_cancel:
        click.echo("  cancel is on (the access token is required for every page)")
    sys.stdout.flush()
    uvicorn.Server(config).run(sockets=[sock])


__all__ = ["ui"]
