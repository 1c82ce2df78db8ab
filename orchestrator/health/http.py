"""A minimal HTTP/1.1 server for ``/metrics``, ``/healthz`` and ``/readyz``, in anyio.

Why not uvicorn: ``uvicorn.Server.serve()`` installs its own SIGINT/SIGTERM handlers for as
long as it runs (``capture_signals``) and re-raises the signals when it returns, which would
take the daemon's graceful drain out of its hands, and a cancelled ``serve()`` skips its own
shutdown. Probes and scrapes need only ``GET`` of a few fixed paths, so this server reads one
request head (at most 8 KiB, within ``request_timeout_s``), answers it with ``Connection:
close`` and closes the connection. It runs as a task of the process's own task group: it
starts, answers and stops with structured concurrency, and a client that misbehaves only
ends its own connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from orchestrator.health.address import EndpointError
from orchestrator.logs import get_logger

MAX_HEAD_BYTES = 8192
log = get_logger("orchestrator.health")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Response]
"""Builds the answer to a ``GET`` of one path (run in the event loop: keep it quick)."""

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 500: "Internal Server Error", 503: "Service Unavailable"}


async def serve_http(host: str, port: int, routes: Mapping[str, Route], *,
                     request_timeout_s: float = 5.0,
                     task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
    """Serve ``routes`` on ``host:port`` until cancelled; reports the bound port (useful with
    port 0) through ``task_status`` once listening."""
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as exc:
        raise EndpointError(f"cannot serve /metrics, /healthz and /readyz on {host}:{port}: "
                            f"{exc.strerror or exc}") from exc
    bound = listener.listeners[0].extra(SocketAttribute.local_port)

    async def handle(stream: SocketStream) -> None:
        async with stream:
            try:
                response = await _answer(stream, routes, request_timeout_s)
                await stream.send(_encode(response))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # the client went away

    async with listener:
        task_status.started(bound)
        await listener.serve(handle)


async def _answer(stream: SocketStream, routes: Mapping[str, Route],
                  timeout_s: float) -> Response:
    head = b""
    with anyio.move_on_after(timeout_s):
        while b"\r\n\r\n" not in head and len(head) <= MAX_HEAD_BYTES:
            try:
                head += await stream.receive(4096)
            except anyio.EndOfStream:
                break
    if b"\r\n" not in head:
        return Response(408 if not head else 400, b"incomplete request\n")
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return Response(400, b"bad request line\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0].decode("latin-1")
    route = routes.get(target)
    if route is None:
        return Response(404, f"no such path {target[:100]}; try {', '.join(routes)}\n".encode())
    if method not in (b"GET", b"HEAD"):
        return Response(405, b"only GET\n")
    try:
        response = route()
    except Exception:  # a bug in a collector: answer 500, keep serving
        log.exception("health endpoint failed", path=target)
        return Response(500, b"internal error\n")
    return Response(response.status, b"" if method == b"HEAD" else response.body,
                    response.content_type)


def _encode(response: Response) -> bytes:
    reason = _REASONS.get(response.status, "")
    head = (f"HTTP/1.1 {response.status} {reason}\r\n"
            f"Content-Type: {response.content_type}\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + response.body
