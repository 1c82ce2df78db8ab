"""Command line: ``python -m orchestrator.devstack.mongowire --host H --port P`` (add
``--tls-cert-file CERT --tls-key-file KEY`` to speak TLS only)."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from pathlib import Path

import anyio

from orchestrator.devstack.mongowire.server import serve


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.devstack.mongowire",
        description="MongoDB wire-protocol stand-in backed by mongomock (tests/dev only).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=27017, help="port to bind, 0 picks a free one")
    parser.add_argument(
        "--snapshot",
        type=Path,
        default=None,
        help="Extended JSON file loaded at start (if present) and written on clean shutdown",
    )
    parser.add_argument("--tls-cert-file", type=Path, default=None,
                        help="server certificate (PEM): serve TLS only (with --tls-key-file)")
    parser.add_argument("--tls-key-file", type=Path, default=None,
                        help="the certificate's private key (PEM)")
    parser.add_argument("--tls-ca-file", type=Path, default=None,
                        help="require client certificates signed by this CA (mutual TLS)")
    args = parser.parse_args(argv)
    if (args.tls_cert_file is None) != (args.tls_key_file is None) or (
            args.tls_ca_file is not None and args.tls_cert_file is None):
        parser.error("--tls-cert-file and --tls-key-file go together (--tls-ca-file with them)")
    return args


def _server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.tls_cert_file, args.tls_key_file)
    if args.tls_ca_file is not None:
        context.load_verify_locations(args.tls_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _run(args: argparse.Namespace) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: serve(
                    args.host, args.port, snapshot_path=args.snapshot,
                    ssl_context=_server_context(args), task_status=task_status,
                )
            )
            host = f"[{args.host}]" if ":" in args.host else args.host
            print(f"ready mongodb://{host}:{port}/", flush=True)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    anyio.run(_run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
