"""The TCP shell: read framed messages, execute them on the backend, write replies."""

from __future__ import annotations

import itertools
import logging
from functools import partial
from pathlib import Path

import anyio
import bson.errors
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

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


async def _handle_connection(backend: Backend, stream: SocketStream) -> None:
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
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the wire protocol on ``host:port`` until cancelled.

    ``port=0`` picks a free port; ``task_status.started`` reports the bound port, so
    ``port = await tg.start(serve, "127.0.0.1", 0)`` works in a task group. With
    ``snapshot_path``, data is loaded from that file at start (if present) and written back
    when the server stops.
    """
    backend = backend if backend is not None else Backend()
    if snapshot_path is not None:
        snapshot.load_file(backend.client, snapshot_path)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    try:
        async with listener:
            task_status.started(listener.extra(SocketAttribute.local_port))
            await listener.serve(partial(_handle_connection, backend))
    finally:
        if snapshot_path is not None:
            snapshot.save_file(backend.client, snapshot_path)
