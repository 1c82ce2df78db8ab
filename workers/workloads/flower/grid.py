"""A Flower ``Grid`` whose nodes are the job's client participants.

Flower's ServerApp is synchronous and runs in a thread of its own; every call it makes on this
grid crosses to the event loop through an anyio ``BlockingPortal`` and runs there on the
:class:`~.transport.Transport` (the portal works from any thread, also the thread pools of
Flower's legacy ``ServerApp(server_fn=...)``). When the run is over (finished, failed or
stopped) the grid is closed: any later call raises, so a ServerApp thread left behind by a
cancellation stops at its next message instead of talking to a finished job.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from anyio.from_thread import BlockingPortal
from flwr.app import Message, RecordDict
from flwr.serverapp.grid import Grid
from flwr.supercore.run import Run

from orchestrator.errors import WorkloadError
from workers.workloads.flower.transport import Transport


class GridClosedError(WorkloadError):
    """The run this grid served is over."""


class OrchestratorGrid(Grid):
    """Flower's ``Grid`` over the orchestrator's participant messaging (see the module doc)."""

    def __init__(self, portal: BlockingPortal, transport: Transport, run_id: int) -> None:
        self._portal = portal
        self._transport = transport
        self._run = Run.create_empty(run_id)
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            msg = "the orchestrator's Flower run is over"
            raise GridClosedError(msg)

    def set_run(self, run: Run) -> None:
        if not isinstance(run, Run):
            msg = f"`run` must be an instance of Run, got {type(run).__name__}"
            raise TypeError(msg)
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """The client participants that are not gone (see ``Transport.live_node_ids``)."""
        self._check_open()
        return self._transport.live_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self._check_open()
        return self._portal.call(self._transport.push, list(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self._check_open()
        return self._portal.call(self._transport.take, list(message_ids))

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        """Push, then wait (on the event loop, not polling) until every reply came or
        ``timeout`` passed; replies still missing then are not waited for any more."""
        ids = list(self.push_messages(messages))
        self._check_open()
        self._portal.call(self._transport.wait, ids, timeout)
        self._check_open()
        return self._portal.call(functools.partial(self._transport.take, ids, forget=True))
