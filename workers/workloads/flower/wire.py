"""How Flower ``Message``s travel between participants: Flower's own protobuf serde, the bytes
as an object in the object store (``put_blob``), and only a small JSON notice through
participant messaging: ``{"type": "flower.message" | "flower.reply", "id", "key", "sha256",
"round"}``. Never pickle: the bytes are a ``flwr.proto.message_pb2.Message`` and Flower loads
its arrays with ``allow_pickle=False``.

Node ids: Flower addresses nodes by integer; client ``client-<i>`` is node ``NODE_ID_BASE + i``
(never Flower's reserved 0 or the SuperLink's 1).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flwr.app import Error, Message, Metadata
from flwr.app.message import make_message
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.proto.message_pb2 import Message as ProtoMessage

from orchestrator.errors import WorkloadError
from workers.sdk import WorkloadContext, blob_sha256

NODE_ID_BASE = 1000
MESSAGE = "flower.message"
REPLY = "flower.reply"
DONE = "flower.done"
ABORT = "flower.abort"


def node_id(participant: str) -> int:
    """The Flower node id of ``client-<i>``."""
    return NODE_ID_BASE + int(participant.removeprefix("client-"))


def flower_run_id(job_id: str) -> int:
    """A stable Flower run id for the job (63 bits of the job id's sha256)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") >> 1


def encode(message: Message, message_id: str) -> bytes:
    """``message`` as Flower's protobuf bytes, carrying ``message_id`` (Flower's grids assign
    ids on push; the receiver's reply refers to it)."""
    proto = message_to_proto(message)
    proto.metadata.message_id = message_id
    data: bytes = proto.SerializeToString()
    return data


def decode(data: bytes, *, what: str) -> Message:
    """A Flower ``Message`` from :func:`encode`'s bytes; ``WorkloadError`` naming ``what``."""
    try:
        return message_from_proto(ProtoMessage.FromString(data))
    except Exception as exc:  # protobuf's DecodeError, or records Flower refuses
        msg = f"{what}: not a Flower message ({exc})"
        raise WorkloadError(msg) from exc


def error_reply(request: Message, request_id: str, error: Error) -> Message:
    """An error reply to ``request`` (pushed as ``request_id``), from its destination node."""
    meta = request.metadata
    return make_message(Metadata(
        run_id=meta.run_id, message_id="", src_node_id=meta.dst_node_id,
        dst_node_id=meta.src_node_id, reply_to_message_id=request_id, group_id=meta.group_id,
        created_at=time.time(), ttl=meta.ttl, message_type=meta.message_type,
    ), error=error)


def new_message_id() -> str:
    return uuid.uuid4().hex


async def put_message(ctx: WorkloadContext, kind: str, message: Message, *, message_id: str,
                      refers_to: str, round_: int) -> dict[str, Any]:
    """Store ``message`` and return the notice to send (``refers_to``: the id the receiver
    matches: the message's own id, or for a reply the id it answers)."""
    data = encode(message, message_id)
    key = await ctx.put_blob(f"flower-{message_id}.pb", data)
    return {"type": kind, "id": refers_to, "key": key,
            "sha256": hashlib.sha256(data).hexdigest(), "round": round_}


async def fetch_message(ctx: WorkloadContext, body: Mapping[str, Any]) -> Message:
    """The Flower message a notice refers to, sha256-checked against the notice."""
    key, sha256 = body.get("key"), body.get("sha256")
    if not isinstance(key, str) or not isinstance(sha256, str) or blob_sha256(key) != sha256:
        msg = f"a {body.get('type')} notice without a matching key and sha256: {dict(body)}"
        raise WorkloadError(msg)
    data = await ctx.get_blob(key)  # verified against the sha256 the key carries
    return decode(data, what=f"object {key}")


def message_round(message: Message) -> int | None:
    """The federated round a message belongs to: the ``server-round`` of its config records
    (what Flower's strategies send), else a numeric ``group_id`` (the legacy API's)."""
    if message.has_content():
        for record in message.content.config_records.values():
            value = record.get("server-round")
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
    group = message.metadata.group_id
    return int(group) if group.isdigit() else None


def phase(message: Message) -> str:
    """``train``, ``evaluate`` or ``query`` (the category of the message type)."""
    return message.metadata.message_type.partition(".")[0]
