"""What the agent does for each request of a participant's child process: the real context's
call, with bytes decoded from and encoded into the channel (see
:mod:`workers.isolation.protocol`). Exceptions propagate: the supervisor sends them back."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.errors import WorkloadError
from workers.context import RedisWorkloadContext
from workers.isolation.protocol import BytesCodec

Handler = Callable[[RedisWorkloadContext, BytesCodec, dict[str, Any]], Awaitable[Any]]


async def _report_metrics(ctx: RedisWorkloadContext, _: BytesCodec, a: dict[str, Any]) -> None:
    await ctx.report_metrics(a["round"], a["metrics"])


async def _round_started(ctx: RedisWorkloadContext, _: BytesCodec, a: dict[str, Any]) -> None:
    await ctx.round_started(a["round"])


async def _save_checkpoint(ctx: RedisWorkloadContext, codec: BytesCodec,
                           a: dict[str, Any]) -> str:
    data = await codec.decode(a["data"])
    return await ctx.save_checkpoint(a["round"], data, final=bool(a.get("final")),
                                     ext=str(a.get("ext", "npz")))


async def _load_checkpoint(ctx: RedisWorkloadContext, codec: BytesCodec,
                           a: dict[str, Any]) -> dict[str, Any]:
    sha256 = a.get("sha256")
    return await codec.encode(await ctx.load_checkpoint(
        str(a["key"]), sha256=None if sha256 is None else str(sha256)))


async def _put_blob(ctx: RedisWorkloadContext, codec: BytesCodec, a: dict[str, Any]) -> str:
    return await ctx.put_blob(a["name"], await codec.decode(a["data"]))


async def _get_blob(ctx: RedisWorkloadContext, codec: BytesCodec,
                    a: dict[str, Any]) -> dict[str, Any]:
    return await codec.encode(await ctx.get_blob(str(a["key"])))


async def _send(ctx: RedisWorkloadContext, _: BytesCodec, a: dict[str, Any]) -> None:
    await ctx.send(a["to"], a["body"])


async def _receive(ctx: RedisWorkloadContext, _: BytesCodec,
                   a: dict[str, Any]) -> dict[str, Any]:
    timeout = a.get("timeout_s")
    message = await ctx.receive(timeout_s=None if timeout is None else float(timeout))
    return {"sender": message.sender, "body": message.body}


async def _unknown(_ctx: RedisWorkloadContext, _codec: BytesCodec, _a: dict[str, Any]) -> None:
    raise WorkloadError("unknown request on the workload channel")


HANDLERS: dict[str, Handler] = {
    "report_metrics": _report_metrics, "round_started": _round_started,
    "save_checkpoint": _save_checkpoint, "load_checkpoint": _load_checkpoint,
    "put_blob": _put_blob, "get_blob": _get_blob, "send": _send, "receive": _receive,
}


def handler_for(op: object) -> Handler:
    """The handler of request ``op`` (one that raises ``WorkloadError`` for an unknown op)."""
    return HANDLERS.get(str(op), _unknown)
