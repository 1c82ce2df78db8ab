"""Reliable event publishing for a worker: nothing it had to send is lost while it lives.

Theory of operation: :meth:`Outbox.put` appends an event to an in-memory queue and returns at
once, so producers (participants, heartbeats) never wait on Redis. One sender task
(:meth:`Outbox.run`) batches by what is already waiting: each time it wakes it lets the tasks
that are ready run once, then publishes everything queued (up to ``max_batch``, unbounded by
default) in one pipelined round trip, and pops the batch only after the publish succeeded;
what was queued meanwhile goes in the next round trip. No timer holds an event back. A
``started`` or heartbeat of a participant whose last event is in the same batch is not sent
(:func:`without_superseded`); events are signed (their MAC made with the run secret they were
queued with) only as they are sent, so a superseded one costs no MAC. When Redis is
unreachable it retries the same batch with capped exponential backoff and jitter; events keep
their producer-generated ``event_id``, so a batch resent after a lost reply is deduplicated by
the daemon. Events therefore leave in the order they were put, which keeps each
participant's ``seq`` increasing on the stream.

During an outage the only events that keep arriving are heartbeats; :meth:`put_heartbeat`
drops a heartbeat when one for the same participant is still queued (liveness is already on
its way), so a long outage does not grow the queue without bound.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from structlog.typing import FilteringBoundLogger

from orchestrator.bus.retry import Backoff
from orchestrator.core.auth import sign_event
from orchestrator.core.events import (
    Heartbeat,
    ParticipantEvent,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
)
from orchestrator.logs import get_logger

Publish = Callable[[Sequence[ParticipantEvent]], Awaitable[object]]
"""Publishes a batch of events (``Bus.publish_events``); raises when it could not."""

Queued = tuple[ParticipantEvent, str | None]
"""An event and the run secret it is to be signed with when sent (None: sent unsigned)."""


class Outbox:
    """An ordered, in-memory queue of events and the task that publishes it.

    ``max_batch`` caps the events of one round trip (``None``: everything queued).
    """

    def __init__(
        self,
        publish: Publish,
        *,
        max_batch: int | None = None,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 2.0,
        log: FilteringBoundLogger | None = None,
    ) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._publish = publish
        self._max_batch = max_batch
        self._backoff = Backoff(base_s=backoff_base_s, cap_s=backoff_max_s)
        self._log: FilteringBoundLogger = log or get_logger("workers.outbox")
        self._queue: deque[Queued] = deque()
        self._queued_heartbeats: dict[tuple[str, str], int] = {}
        self._put_total = 0
        self._sent_total = 0
        self._wakeup = anyio.Event()
        self._progress = anyio.Event()

    # --- producers -------------------------------------------------------------------------

    def put(self, event: ParticipantEvent, secret: str | None = None) -> None:
        """Queue ``event`` for publishing, signed with ``secret`` when sent; never blocks."""
        self._queue.append((event, secret))
        self._put_total += 1
        if isinstance(event, Heartbeat):
            key = (event.job_id, event.participant)
            self._queued_heartbeats[key] = self._queued_heartbeats.get(key, 0) + 1
        self._wakeup.set()

    def put_heartbeat(self, event: Heartbeat, secret: str | None = None) -> bool:
        """Queue a heartbeat unless one of the same participant is still queued."""
        if self._queued_heartbeats.get((event.job_id, event.participant), 0):
            return False
        self.put(event, secret)
        return True

    # --- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Events queued and not yet published."""
        return len(self._queue)

    @property
    def sent(self) -> int:
        """Events published so far."""
        return self._sent_total

    @property
    def connected(self) -> bool:
        """False while the last publish attempt failed."""
        return self._backoff.attempts == 0

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every event put before this call is published; False on timeout."""
        target = self._put_total
        with anyio.move_on_after(timeout_s):
            while self._sent_total < target:
                await self._progress.wait()
            return True
        return False

    # --- the sender ------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish queued events until cancelled (run it in the agent's task group)."""
        task_status.started()
        while True:
            if not self._queue:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
                continue
            # Let the tasks that are ready run first: what they queue now (a participant that
            # started and at once finished) goes in this round trip. A yield, not a timer.
            await anyio.lowlevel.checkpoint()
            batch = list(itertools.islice(self._queue, self._max_batch))
            try:
                await self._publish([event if secret is None else sign_event(secret, event)
                                     for event, secret in without_superseded(batch)])
            except Exception as exc:  # any failure: keep the batch, back off, retry
                delay_s = self._backoff.next()
                failures = self._backoff.attempts
                if failures == 1 or failures % 20 == 0:
                    self._log.warning(
                        "cannot publish events; will retry",
                        error=f"{type(exc).__name__}: {exc}",
                        pending=len(self._queue),
                        attempts=failures,
                        retry_in_s=round(delay_s, 3),
                    )
                await anyio.sleep(delay_s)
                continue
            if self._backoff.attempts:
                self._log.info(
                    "publishing events again",
                    attempts=self._backoff.attempts,
                    pending=len(self._queue),
                )
                self._backoff.reset()
            for _ in batch:
                event, _secret = self._queue.popleft()
                if isinstance(event, Heartbeat):
                    key = (event.job_id, event.participant)
                    left = self._queued_heartbeats.get(key, 0) - 1
                    if left > 0:
                        self._queued_heartbeats[key] = left
                    else:
                        self._queued_heartbeats.pop(key, None)
            self._sent_total += len(batch)
            progress, self._progress = self._progress, anyio.Event()
            progress.set()


_LAST_WORDS = (ParticipantFinished, ParticipantFailed, ParticipantStopped)


def without_superseded(batch: list[Queued]) -> list[Queued]:
    """The batch without the ``started`` and heartbeat events of a participant whose last
    event is in it too: its end says it ran, and the daemon takes a participant's state
    forward from wherever it stood (work not done, nothing lost)."""
    ended = {(e.job_id, e.participant) for e, _ in batch if isinstance(e, _LAST_WORDS)}
    if not ended:
        return batch
    return [(e, secret) for e, secret in batch
            if not (isinstance(e, ParticipantStarted | Heartbeat)
                    and (e.job_id, e.participant) in ended)]


E = TypeVar("E", bound=ParticipantEvent)


class ParticipantEvents:
    """Stamps one participant's events (ids, ``seq``, time, MAC) and queues them in an outbox.

    ``seq`` is the wall clock in microseconds, forced to grow by at least one per event, so it
    keeps growing across a restart of the worker process too (the daemon only counts liveness
    on a ``seq`` above the highest it has seen). ``secret`` is the run secret of the start (or
    stop) command: every event is signed with it as the outbox sends it
    (``orchestrator.core.auth``); without one (a command from a daemon that sent none) events
    go unsigned and the daemon refuses them.
    """

    def __init__(self, outbox: Outbox, *, job_id: str, participant: str, worker: str,
                 secret: str | None = None) -> None:
        self.outbox = outbox
        self.job_id = job_id
        self.participant = participant
        self.worker = worker
        self._secret = secret
        self._seq = -1

    def __repr__(self) -> str:  # (never shows the secret)
        return f"ParticipantEvents({self.job_id}/{self.participant} on {self.worker})"

    def next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    def make(self, event_type: type[E], **fields: Any) -> E:
        """A new event of ``event_type`` with a fresh ``event_id`` and the next ``seq`` (its
        MAC is made as it is sent)."""
        return event_type(
            event_id=uuid.uuid4().hex,
            job_id=self.job_id,
            participant=self.participant,
            worker=self.worker,
            seq=self.next_seq(),
            at=datetime.now(UTC),
            **fields,
        )

    def emit(self, event_type: type[E], **fields: Any) -> E:
        """Make an event and queue it for publishing (the event as made, without its MAC)."""
        event = self.make(event_type, **fields)
        self.outbox.put(event, self._secret)
        return event

    def heartbeat(self, round: int | None) -> bool:
        """Queue a heartbeat unless one is still waiting to be sent."""
        return self.outbox.put_heartbeat(self.make(Heartbeat, round=round), self._secret)
