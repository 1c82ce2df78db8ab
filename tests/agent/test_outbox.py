"""The outbox on its own: order, retries until the bus takes a batch, heartbeat coalescing."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel

from orchestrator.core.events import (
    Heartbeat,
    ParticipantEvent,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    RoundMetrics,
)
from workers.outbox import Outbox, ParticipantEvents


class FlakyBus:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.published: list[ParticipantEvent] = []

    async def publish(self, events: Sequence[ParticipantEvent]) -> None:
        self.calls += 1
        await anyio.sleep(0)
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("redis is down")
        self.published.extend(events)


async def test_events_leave_in_order_after_failures() -> None:
    bus = FlakyBus(failures=5)
    outbox = Outbox(bus.publish, max_batch=3, backoff_base_s=0.001, backoff_max_s=0.01)
    events = ParticipantEvents(outbox, job_id="j", participant="server", worker="w")
    sent = [events.emit(RoundMetrics, round=r, metrics={"loss": 1.0 / r}) for r in range(1, 11)]
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        assert await outbox.flush(5)
        tg.cancel_scope.cancel()
    assert bus.published == sent
    assert bus.calls == 5 + 4  # 10 events in batches of 3, after 5 failed attempts
    seqs = [e.seq for e in sent]
    assert seqs == sorted(set(seqs))
    assert outbox.pending == 0 and outbox.sent == 10 and outbox.connected


async def test_heartbeats_coalesce_while_one_is_queued() -> None:
    bus = FlakyBus(failures=10**9)
    outbox = Outbox(bus.publish, backoff_base_s=0.001, backoff_max_s=0.005)
    events = ParticipantEvents(outbox, job_id="j", participant="client-0", worker="w")
    other = ParticipantEvents(outbox, job_id="j", participant="client-1", worker="w")
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        assert events.heartbeat(1)
        assert not events.heartbeat(2)
        assert other.heartbeat(None)
        assert not await outbox.flush(0.05)
        assert outbox.pending == 2 and not outbox.connected
        bus.failures = 0
        assert await outbox.flush(5)
        assert events.heartbeat(3)  # the queued one left: a new one is welcome
        assert await outbox.flush(5)
        tg.cancel_scope.cancel()
    beats = [e for e in bus.published if isinstance(e, Heartbeat)]
    assert [(b.participant, b.round) for b in beats] == [
        ("client-0", 1), ("client-1", None), ("client-0", 3)
    ]


async def test_everything_queued_goes_out_in_one_publish() -> None:
    bus = FlakyBus(failures=0)
    outbox = Outbox(bus.publish)
    events = ParticipantEvents(outbox, job_id="j", participant="server", worker="w")
    first = [events.emit(RoundMetrics, round=r, metrics={"loss": 1.0}) for r in range(1, 251)]
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        assert await outbox.flush(5)
        assert bus.calls == 1  # all 250 in one round trip
        second = [events.emit(RoundMetrics, round=r, metrics={"loss": 2.0}) for r in range(1, 4)]
        assert await outbox.flush(5)
        tg.cancel_scope.cancel()
    assert bus.calls == 2
    assert bus.published == first + second


async def test_a_start_or_beat_superseded_by_the_end_in_the_same_batch_is_not_sent() -> None:
    """A participant that started and ended before the sender ran: only its end goes out
    (it says it ran). Another participant's start, and a start already sent, are kept."""
    bus = FlakyBus(failures=0)
    outbox = Outbox(bus.publish)
    quick = ParticipantEvents(outbox, job_id="j", participant="client-0", worker="w")
    other = ParticipantEvents(outbox, job_id="j", participant="client-1", worker="w")
    slow = ParticipantEvents(outbox, job_id="j", participant="server", worker="w")
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        slow_start = slow.emit(ParticipantStarted)
        assert await outbox.flush(5)
        quick.emit(ParticipantStarted)
        quick.heartbeat(None)
        other_start = other.emit(ParticipantStarted)
        quick_end = quick.emit(ParticipantFinished)
        slow_end = slow.emit(ParticipantFailed, message="boom")
        assert await outbox.flush(5)
        tg.cancel_scope.cancel()
    assert bus.published == [slow_start, other_start, quick_end, slow_end]
    assert outbox.sent == 6 and outbox.pending == 0  # the superseded count as sent


async def test_what_ready_tasks_queue_at_once_goes_in_the_same_round_trip() -> None:
    """The sender yields once before it takes the queue: a start and an end queued by one
    task around a single checkpoint (a workload that returns at once) leave together."""
    bus = FlakyBus(failures=0)
    outbox = Outbox(bus.publish)
    events = ParticipantEvents(outbox, job_id="j", participant="server", worker="w")
    async with anyio.create_task_group() as tg:
        await tg.start(outbox.run)
        events.emit(ParticipantStarted)
        await anyio.lowlevel.checkpoint()  # the workload
        end = events.emit(ParticipantFinished)
        assert await outbox.flush(5)
        tg.cancel_scope.cancel()
    assert bus.calls == 1
    assert bus.published == [end]
