"""The ``WorkloadContext`` a workload sees inside its child process.

Every call that reaches the orchestrator (metrics, rounds, checkpoints, blobs, messages) is a
request over the :class:`~workers.isolation.protocol.Channel` to the agent, which carries it out
with the participant's real context (:class:`~workers.context.RedisWorkloadContext`): the run
secret, the mailbox key, Redis and the object store stay in the agent, so workload code sees
none of them. Identity, ``gone_peers`` and cancellation are local: the agent's ``stop`` and
``gone`` notices update them, and a stop also wakes a ``receive`` that is waiting.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel
from structlog.typing import FilteringBoundLogger

from orchestrator.core.status import Role
from workers.context_base import ContextBase, Identity
from workers.isolation.protocol import BytesCodec, Channel, ChannelClosedError, error_from_wire
from workers.validation import check_recipient, check_round, encode_message_body, validate_metrics
from workers.workload_api import PeerMessage, WorkloadCancelled


class _Pending:
    """One request waiting for its answer."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: dict[str, Any] = {}


class ChildContext(ContextBase):
    """A participant's context in its child process: requests to the agent, answered there."""

    def __init__(self, identity: Identity, log: FilteringBoundLogger, channel: Channel,
                 codec: BytesCodec) -> None:
        super().__init__(identity, log)
        self._channel = channel
        self._codec = codec
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._receive_scope: anyio.CancelScope | None = None
        self.closed = False

    # --- the agent's side of the channel ------------------------------------------------------

    async def serve(self) -> None:
        """Read the agent's answers and notices until the channel closes (a task of its own)."""
        try:
            while True:
                message = await self._channel.receive()
                self._handle(message)
        except ChannelClosedError:
            pass
        finally:
            self.closed = True
            self.request_stop()  # the agent is gone: nobody would hear of the result
            for pending in self._pending.values():
                pending.reply = {"error": {"kind": "other", "message": "the worker went away"}}
                pending.done.set()

    def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "stop":
            self.request_stop()
        elif op == "gone":
            gone = message.get("gone")
            if isinstance(gone, list):
                self.mark_gone(gone)
        elif isinstance(message.get("id"), int):
            pending = self._pending.pop(message["id"], None)
            if pending is not None:
                pending.reply = message
                pending.done.set()

    def mark_gone(self, gone: Iterable[Any]) -> None:
        """Clients gone, as the agent told (the ``membership`` message itself comes through
        ``receive``, from the agent's context)."""
        self._gone |= frozenset(str(g) for g in gone)

    def request_stop(self) -> None:
        """A stop was requested (the agent's notice, or SIGTERM)."""
        self._stop_requested = True
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    async def _call(self, op: str, **args: Any) -> Any:
        if self.closed:
            raise WorkloadCancelled("the worker went away")
        request_id = next(self._ids)
        pending = self._pending[request_id] = _Pending()
        await self._channel.send({"id": request_id, "op": op, "args": args})
        await pending.done.wait()
        if "error" in pending.reply:
            raise error_from_wire(pending.reply["error"])
        return pending.reply.get("ok")

    def _deliver(self, message: PeerMessage) -> None:  # pragma: no cover - never local
        raise NotImplementedError("messages are delivered by the agent")

    # --- the SDK ---------------------------------------------------------------------------

    async def report_metrics(self, round: int, metrics: Mapping[str, float]) -> None:
        check_round(round, minimum=0)  # (the checks here too: what travels must be JSON)
        await self._call("report_metrics", round=round, metrics=validate_metrics(metrics))

    async def round_started(self, round: int) -> None:
        check_round(round, minimum=1)
        await self._call("round_started", round=round)

    async def save_checkpoint(
        self, round: int, data: bytes, *, final: bool = False, ext: str = "npz"
    ) -> str:
        self._checkpoint_key(round, data, ext)  # the same checks, before the bytes travel
        ref = await self._codec.encode(bytes(data))
        return str(await self._call("save_checkpoint", round=round, data=ref, final=final,
                                    ext=ext))

    async def load_checkpoint(self, key: str, *, sha256: str | None = None) -> bytes:
        return await self._codec.decode(await self._call("load_checkpoint", key=key,
                                                         sha256=sha256))

    async def put_blob(self, name: str, data: bytes) -> str:
        ref = await self._codec.encode(bytes(data))
        return str(await self._call("put_blob", name=name, data=ref))

    async def get_blob(self, key: str) -> bytes:
        return await self._codec.decode(await self._call("get_blob", key=key))

    async def send(self, to: str, body: Mapping[str, Any]) -> None:
        check_recipient(self.participant, to, self.peers)
        await self._call("send", to=to, body=encode_message_body(body))

    async def receive(self, *, timeout_s: float | None = None) -> PeerMessage:
        await self.checkpoint_cancel()
        with anyio.CancelScope() as scope:
            self._receive_scope = scope
            try:
                reply = await self._call("receive", timeout_s=timeout_s)
            finally:
                self._receive_scope = None
        if scope.cancelled_caught or self._stop_requested:
            await self.checkpoint_cancel()
        return PeerMessage(sender=str(reply["sender"]), body=dict(reply["body"]))


def identity_from_wire(data: Mapping[str, Any]) -> Identity:
    """The participant's identity from the ``init`` notice."""
    peers: Sequence[str] = data["peers"]
    return Identity(
        job_id=str(data["job_id"]), participant=str(data["participant"]),
        role=Role(data["role"]), run_id=str(data["run_id"]), config=dict(data["config"]),
        data_path=data.get("data_path"), model=data.get("model"), rounds=int(data["rounds"]),
        peers=tuple(peers), client_index=data.get("client_index"),
        client_count=int(data["client_count"]), min_clients=int(data["min_clients"]),
    )
