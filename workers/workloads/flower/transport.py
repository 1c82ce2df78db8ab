"""The server side of the orchestrator as Flower's transport, on the event loop.

:class:`Transport` pushes Flower messages to client participants (bytes through the object
store, a notice through participant messaging, see :mod:`.wire`), and its :meth:`pump` task
is the only reader of the server's inbox: it files replies by the id they answer and wakes
whoever waits for them. A client the orchestrator reports gone (``ctx.gone_peers``, the
``membership`` message) gets an error reply (``NODE_UNAVAILABLE``) for every message it still
owes, so a strategy waiting for it goes on with the others at once, as Flower's own
``send_and_receive`` does with replies that never come. :class:`~.grid.OrchestratorGrid` is the
synchronous face of this class for the ServerApp's thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import anyio
from flwr.app import Error, Message
from flwr.common.constant import ErrorCode

from orchestrator.errors import WorkloadError
from workers.sdk import ORCHESTRATOR, WorkloadContext
from workers.workloads.flower import wire
from workers.workloads.flower.observer import RoundObserver


@dataclass
class _Pending:
    """A message pushed to ``participant``, and its reply once it came."""

    participant: str
    message: Message
    done: anyio.Event = field(default_factory=anyio.Event)
    reply: Message | None = None


class Transport:
    """Pushes Flower messages to the job's clients and collects their replies."""

    def __init__(self, ctx: WorkloadContext, observer: RoundObserver) -> None:
        self.ctx = ctx
        self.observer = observer
        self.clients = [p for p in ctx.peers if p != ctx.participant]
        self.nodes = {wire.node_id(p): p for p in self.clients}
        self._pending: dict[str, _Pending] = {}

    def live_node_ids(self) -> list[int]:
        """The node ids of the clients that are not gone; raises when fewer than
        ``min_clients`` are left (the job cannot succeed: fail now, with the reason)."""
        gone = self.ctx.gone_peers
        live = [n for n, p in self.nodes.items() if p not in gone]
        if len(live) < self.ctx.min_clients:
            msg = (f"only {len(live)} of {len(self.clients)} clients are left "
                   f"(min_clients={self.ctx.min_clients}); gone: {', '.join(sorted(gone))}")
            raise WorkloadError(msg)
        return live

    async def push(self, messages: Sequence[Message]) -> list[str]:
        """Send each message to its node; returns the ids their replies will answer."""
        await self.observer.on_push(messages)
        ids: list[str] = []
        for message in messages:
            message_id = wire.new_message_id()
            participant = self.nodes.get(message.metadata.dst_node_id)
            pending = self._pending[message_id] = _Pending(participant or "?", message)
            ids.append(message_id)
            if participant is None or participant in self.ctx.gone_peers:
                self._fail(pending, message_id, f"node {message.metadata.dst_node_id} is "
                           + ("gone" if participant else "not a client of this job"))
                continue
            notice = await wire.put_message(
                self.ctx, wire.MESSAGE, message, message_id=message_id, refers_to=message_id,
                round_=wire.message_round(message) or self.observer.round)
            await self.ctx.send(participant, notice)
        return ids

    async def wait(self, ids: Iterable[str], timeout_s: float | None) -> None:
        """Until every message of ``ids`` has its reply, or ``timeout_s`` passed."""
        with anyio.move_on_after(timeout_s):
            for message_id in ids:
                pending = self._pending.get(message_id)
                if pending is not None:
                    await pending.done.wait()

    async def take(self, ids: Iterable[str], *, forget: bool = False) -> list[Message]:
        """The replies that came for ``ids`` (each is handed out once); ``forget``: stop
        waiting for the others too (their late replies are dropped)."""
        replies: list[Message] = []
        for message_id in ids:
            pending = self._pending.get(message_id)
            if pending is None:
                continue
            if pending.reply is not None:
                replies.append(pending.reply)
                del self._pending[message_id]
            elif forget:
                del self._pending[message_id]
        await self.observer.on_replies(replies)
        return replies

    async def pump(self) -> None:
        """Read the server's inbox for as long as the ServerApp runs (the only reader)."""
        while True:
            message = await self.ctx.receive()
            if message.sender == ORCHESTRATOR:
                self.ctx.log.info("clients gone", gone=message.body.get("gone"))
                self._fail_gone()
                continue
            body = message.body
            pending = self._pending.get(str(body.get("id")))
            if body.get("type") != wire.REPLY or pending is None:
                self.ctx.log.info("ignored a message", sender=message.sender,
                                  type=body.get("type"))
                continue
            if message.sender != pending.participant:
                self.ctx.log.warning("ignored a reply from the wrong client",
                                     sender=message.sender, expected=pending.participant)
                continue
            try:
                reply = await wire.fetch_message(self.ctx, body)
            except WorkloadError as exc:
                self._fail(pending, str(body.get("id")), f"unreadable reply: {exc}")
                continue
            if not pending.done.is_set():
                pending.reply = reply
                pending.done.set()

    def _fail_gone(self) -> None:
        gone = self.ctx.gone_peers
        for message_id, pending in list(self._pending.items()):
            if pending.participant in gone and not pending.done.is_set():
                self._fail(pending, message_id, f"{pending.participant} is gone")

    def _fail(self, pending: _Pending, message_id: str, reason: str) -> None:
        """Answer ``pending`` with an error reply, as Flower's SuperLink does for a node that
        went away."""
        pending.reply = wire.error_reply(pending.message, message_id,
                                         Error(code=ErrorCode.NODE_UNAVAILABLE, reason=reason))
        pending.done.set()
