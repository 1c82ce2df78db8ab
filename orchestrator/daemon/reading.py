"""Reading: consumer-group batches into the pipeline, reclaim of abandoned entries, trim.

A reader never has a read cancelled while Redis may be answering it: reads BLOCK for at most
``block_ms``, and a stop is noticed between reads, so every batch Redis hands out reaches the
pipeline and is acknowledged before the daemon returns. Only when a read has not come back
well after ``block_ms`` (Redis away) does a stop cancel it; nothing was delivered then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio
import anyio.lowlevel
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from orchestrator.bus import Entry, StreamConsumer
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.waits import sleep_unless
from orchestrator.errors import OrchestratorError
from orchestrator.logs import get_logger

log = get_logger("orchestrator.daemon")

#: Handles one batch; returns what to commit (None: nothing).
Handler = Callable[[list[Entry]], Awaitable[Commit | None]]


async def read_batches(consumer: StreamConsumer, batches: ObjectSendStream[list[Entry]],
                       stopping: anyio.Event, *, caught_up: anyio.Event | None = None) -> None:
    """Read until ``stopping``; every batch read goes to ``batches``, which is then closed."""
    guard = _ReadGuard(consumer.block_ms / 1000 + 1.0)
    async with batches, anyio.create_task_group() as tg:
        tg.start_soon(guard.watch, stopping)
        while not stopping.is_set():
            entries = await guard.read(consumer, stopping)
            if entries is None:
                break
            if (caught_up is not None and not caught_up.is_set()
                    and len(entries) < consumer.batch and not consumer.draining):
                caught_up.set()
            if entries:
                await batches.send(entries)
                # Let the handler start on this batch before the next read is issued: at light
                # load the job's next hop waits on it, not on the read (a yield, not a timer).
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()


class _ReadGuard:
    """Cancels the read in progress once a stop is ``grace_s`` old (Redis away: nothing can
    have been delivered), and never a read Redis may still be answering."""

    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.scope: anyio.CancelScope | None = None
        self.expired = False

    async def watch(self, stopping: anyio.Event) -> None:
        await stopping.wait()
        await anyio.sleep(self.grace_s)
        self.expired = True
        if self.scope is not None:
            self.scope.cancel()

    async def read(self, consumer: StreamConsumer, stopping: anyio.Event) -> list[Entry] | None:
        """One read (maybe empty); None when the stop had to cut it."""
        entries: list[Entry] = []
        with anyio.CancelScope() as self.scope:
            if self.expired:
                self.scope.cancel()
            try:
                entries = await consumer.read()
            except OrchestratorError as exc:  # refused by Redis (not a connection error)
                log.exception("read failed; retrying", error=str(exc))
                await sleep_unless(stopping, 1.0)
        self.scope = None
        return None if self.expired and not entries else entries


async def handle_batches(batches: ObjectReceiveStream[list[Entry]], handle: Handler,
                         commits: ObjectSendStream[Commit]) -> None:
    """Hand each batch to ``handle`` and its commit on, until every reader is done.

    A batch whose handling fails for an unexpected reason (a bug) stays pending: it is read
    again (reclaimed), and dead-lettered after ``max_deliveries``; the daemon carries on.
    """
    async with batches, commits:
        async for entries in batches:
            try:
                commit = await handle(entries)
            except Exception:
                log.exception("batch handling failed; entries left pending",
                              stream=entries[0].stream, count=len(entries))
                continue
            if commit is not None:
                await commits.send(commit)


@dataclass(frozen=True, slots=True)
class Reader:
    """A consumer and where its reclaimed entries go (its handler's input)."""

    consumer: StreamConsumer
    batches: ObjectSendStream[list[Entry]]


async def upkeep(readers: Sequence[Reader], stopping: anyio.Event, *, every_s: float,
                 trim_every_s: float, maxlen: int) -> None:
    """Reclaim abandoned entries (any consumer's) into the pipeline; trim streams."""
    async with AsyncExitStack() as stack:
        for reader in readers:
            await stack.enter_async_context(reader.batches)
        next_trim = anyio.current_time() + trim_every_s
        while not stopping.is_set():
            await sleep_unless(stopping, every_s)
            for reader in readers:
                if stopping.is_set():
                    return
                try:
                    claimed = await reader.consumer.reclaim()
                except OrchestratorError as exc:
                    log.warning("reclaim failed", error=str(exc))
                    continue
                if claimed:
                    await reader.batches.send(claimed)
            if anyio.current_time() >= next_trim:
                next_trim = anyio.current_time() + trim_every_s
                for reader in readers:
                    try:
                        removed = await reader.consumer.trim(maxlen)
                    except OrchestratorError as exc:
                        log.warning("trim failed", error=str(exc))
                        continue
                    if removed:
                        log.info("streams trimmed", removed=removed)
