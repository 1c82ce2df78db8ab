"""The local channel between a worker agent and a participant's child process.

Line-delimited JSON over a socket pair, never pickle. Each line is one message:

* child → agent requests ``{"id": N, "op": OP, "args": {...}}``, answered by
  ``{"id": N, "ok": RESULT}`` or ``{"id": N, "error": {"kind": K, "message": M}}``;
* agent → child notices ``{"op": "init", ...}`` (first), ``{"op": "stop"}`` and
  ``{"op": "gone", "gone": [...], "reason": R}``;
* child → agent ``{"op": "ready"}`` once SIGTERM is a stop request there (the agent sends
  SIGTERM only from then on: before, the default action would kill the child), and, last,
  ``{"op": "result", ...}`` or ``{"op": "raised", "error": {...}}``.

Bytes (checkpoints, blobs) travel as base64 when small (:data:`INLINE_BYTES_MAX`), else as a
file in the run's temporary directory whose path the message carries; the receiver reads and
deletes it. Errors travel as a *kind* that the other side turns back into the SDK's exception
types, so a workload sees the same exceptions in a child process as inline.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    WorkloadError,
)
from orchestrator.storage.retry import StorageOutageError
from workers.workload_api import PeerMessageError, WorkloadCancelled

INLINE_BYTES_MAX = 64 * 1024
"""Bytes up to this size travel inside the message (base64); larger ones as a file."""
MAX_LINE_BYTES = 4 * 1024 * 1024
"""The longest message line (bytes above INLINE_BYTES_MAX never travel inline)."""

_KINDS: tuple[tuple[str, type[BaseException]], ...] = (
    ("cancelled", WorkloadCancelled),
    ("timeout", TimeoutError),
    ("peer", PeerMessageError),
    ("outage", StorageOutageError),  # (raised on the other side as StorageUnavailableError)
    ("unavailable", StorageUnavailableError),
    ("not_found", ObjectNotFoundError),
    ("integrity", IntegrityError),
    ("storage", StorageError),
    ("workload", WorkloadError),
)
"""Error kinds, most specific first (the first class an exception is an instance of wins)."""


class ChannelClosedError(Exception):
    """The other side closed the channel (or sent a line that is not a message)."""


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """``{"kind", "message"}`` of an exception (kind ``other`` for anything not in the SDK)."""
    kind = next((name for name, cls in _KINDS if isinstance(exc, cls)), "other")
    return {"kind": kind, "message": str(exc) or type(exc).__name__,
            "type": type(exc).__name__}


def error_from_wire(error: dict[str, Any]) -> BaseException:
    """The SDK exception for a wire error (``WorkloadError`` for kind ``other``)."""
    kind, message = str(error.get("kind", "other")), str(error.get("message", ""))
    if kind == "outage":
        return StorageUnavailableError(message)
    cls = next((cls for name, cls in _KINDS if name == kind), WorkloadError)
    return cls(message)


class BytesCodec:
    """Puts bytes into a message and takes them out, through ``directory`` when large."""

    def __init__(self, directory: str, prefix: str) -> None:
        self.directory = directory
        self._prefix = prefix
        self._counter = itertools.count()

    async def encode(self, data: bytes) -> dict[str, Any]:
        if len(data) <= INLINE_BYTES_MAX:
            return {"b64": base64.b64encode(data).decode()}
        path = os.path.join(self.directory, f"{self._prefix}-{next(self._counter)}.bin")
        await anyio.Path(path).write_bytes(data)
        return {"file": path, "size": len(data)}

    async def decode(self, ref: Any) -> bytes:
        if not isinstance(ref, dict):
            raise WorkloadError("malformed bytes reference on the workload channel")
        if "b64" in ref:
            return base64.b64decode(str(ref["b64"]), validate=True)
        file = await anyio.Path(str(ref.get("file", ""))).resolve()
        if file.parent != await anyio.Path(self.directory).resolve():
            raise WorkloadError("bytes reference outside the run's directory")
        data = await file.read_bytes()
        await file.unlink(missing_ok=True)
        return data


class Channel:
    """Line-delimited JSON messages over a byte stream (one writer at a time)."""

    def __init__(self, send: ByteSendStream, receive: ByteReceiveStream) -> None:
        self._send = send
        self._receive = BufferedByteReceiveStream(receive)
        self._lock = anyio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
        async with self._lock:
            await self._send.send(line)

    async def receive(self) -> dict[str, Any]:
        """The next message; ``ChannelClosedError`` at the end of the stream."""
        try:
            line = await self._receive.receive_until(b"\n", MAX_LINE_BYTES)
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                anyio.ClosedResourceError) as exc:
            raise ChannelClosedError("the channel closed") from exc
        except anyio.DelimiterNotFound as exc:
            raise ChannelClosedError("a message line was too long") from exc
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ChannelClosedError("a message line was not JSON") from exc
        if not isinstance(message, dict):
            raise ChannelClosedError("a message was not a JSON object")
        return message
