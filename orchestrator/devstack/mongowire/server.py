"""The TCP shell: read framed messages, execute them on the backend, write replies (over TLS
when given an ``ssl_context``, so the driver's ``tls=true`` can be tested against it)."""

from __future__ import annotations

import itertools
import logging
import ssl
from functools import partial
from pathlib import Path

import anyio
import bson.errors
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener

from orchestrator.devstack.mongowire import snapshot
from orchestrator.devstack.mongowire.backend import Backend
from orchestrator.devstack.mongowire.protocol import (
    HEADER_SIZE,
    ProtocolError,
    encode_reply,
    parse_header,
    parse_message,
)
from orchestrator.devstack.mongowire.request import CommandError

log = logging.getLogger(__name__)

_request_ids = itertools.count(1)


async def _handle_connection(backend: Backend, stream: ByteStream) -> None:
    connection_id = backend.new_connection_id()
    received = BufferedByteReceiveStream(stream)
    async with stream:
        try:
            while True:
                header = parse_header(await received.receive_exactly(HEADER_SIZE))
                payload = await received.receive_exactly(header.length - HEADER_SIZE)
                command = parse_message(header, payload)
                reply = backend.execute(command.body, connection_id)  # atomic: no await
                if not command.expects_reply:
                    continue
                try:
                    data = encode_reply(command, reply, next(_request_ids))
                except (bson.errors.BSONError, OverflowError) as exc:
                    error = CommandError(1, f"reply could not be encoded: {exc}").to_reply()
                    data = encode_reply(command, error, next(_request_ids))
                await stream.send(data)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            pass
        except ProtocolError as exc:
            log.warning("closing connection %d: %s", connection_id, exc)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    backend: Backend | None = None,
    snapshot_path: Path | None = None,
    ssl_context: ssl.SSLContext | None = None,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the wire protocol on ``host:port`` until cancelled.

    ``port=0`` picks a free port; ``task_status.started`` reports the bound port, so
    ``port = await tg.start(serve, "127.0.0.1", 0)`` works in a task group. With
    ``snapshot_path``, data is loaded from that file at start (if present) and written back
    when the server stops. With ``ssl_context`` (a server context holding the certificate) it
    speaks TLS only; a failed handshake closes that connection and is logged.
    """
    backend = backend if backend is not None else Backend()
    if snapshot_path is not None:
        snapshot.load_file(backend.client, snapshot_path)
    tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
    listener: Listener[ByteStream] = (
        tcp if ssl_context is None
        else TLSListener(tcp, ssl_context, standard_compatible=False, handshake_timeout=10))
    try:
        async with listener:
            task_status.started(tcp.extra(SocketAttribute.local_port))
            await listener.serve(partial(_handle_connection, backend))
    finally:
        if snapshot_path is not None:
            snapshot.save_file(backend.client, snapshot_path)
