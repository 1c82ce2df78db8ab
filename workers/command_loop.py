"""The worker agent's command loop: reading, handling and acknowledging its commands.

Theory of operation. The loop is a :class:`~orchestrator.bus.consumer.StreamConsumer` on this
worker's command stream. Each entry of a read is handled in turn — a ``participant.start`` once
its run exists and beats (it says ``started`` when it gets a slot), a ``participant.stop`` once
the stop was requested, a bad entry dead-lettered — and then the handled ones are acknowledged
with one XACK for the whole read. A read's entries are handled and acknowledged shielded from
a shutdown, so a shutdown never leaves started runs unacknowledged while Redis is up. When the
loop is idle (or just started) it rewinds the consumer, so entries whose XREADGROUP reply a
dropped connection lost are read again.

What the loop asks of Redis besides reading (creating the group, dead-lettering,
acknowledging) is retried by :func:`retry_bus` until Redis takes it, or until it failed once a
shutdown was requested (the next process then does what was left undone). The handling of each
command is the agent's (:meth:`workers.agent.WorkerAgent._handle_entry`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence

import anyio
from redis.asyncio import Redis
from structlog.typing import FilteringBoundLogger

from orchestrator.bus import Entry, StreamConsumer
from orchestrator.bus.keys import Keys
from orchestrator.bus.retry import Backoff
from orchestrator.errors import BusError
from workers.config import AgentConfig

#: Carries out one entry's command; returns why it cannot be carried out, if it cannot.
Handler = Callable[[Entry], Awaitable[str | None]]


def command_consumer(redis: Redis, keys: Keys, cfg: AgentConfig) -> StreamConsumer:
    """The consumer of worker ``cfg.name``'s command stream, as the agent's config sets it."""
    return StreamConsumer(
        redis,
        [keys.commands(cfg.name)],
        keys.worker_group,
        cfg.name,
        batch=cfg.batch,
        block_ms=cfg.block_ms,
        max_deliveries=cfg.max_deliveries,
        reclaim_idle_ms=cfg.reclaim_idle_ms,
        dead_letter=keys.dead_letter,
    )


async def read_commands(consumer: StreamConsumer, handle: Handler, *,
                        log: FilteringBoundLogger, shutdown: anyio.Event) -> None:
    """Create the command group, then read, handle and acknowledge commands until cancelled
    (see the module)."""
    await retry_bus("create the command group", consumer.ensure_groups, log=log,
                    shutdown=shutdown)
    backoff = Backoff()
    entries: list[Entry] = []
    while True:
        if not entries:
            # Idle (or just started): everything read so far is acknowledged, so our
            # pending list holds only entries whose XREADGROUP reply a dropped
            # connection lost. Read them again, at no cost to a busy stream.
            consumer.rewind()
        try:
            entries = await consumer.read()
        except BusError as exc:  # read retries connection errors itself; not these
            log.warning("cannot read commands", error=str(exc))
            entries = []
            await backoff.sleep()
            continue
        backoff.reset()
        with anyio.CancelScope(shield=True):
            await handle_read(consumer, entries, handle, log=log, shutdown=shutdown)


async def handle_read(consumer: StreamConsumer, entries: Sequence[Entry], handle: Handler, *,
                      log: FilteringBoundLogger, shutdown: anyio.Event) -> None:
    """Handle every entry of one read, then acknowledge the handled ones with one XACK."""
    handled: list[Entry] = []
    for entry in entries:
        try:
            problem = await handle(entry)
        except Exception as exc:  # a bug of ours: never let it kill the worker
            log.exception("cannot handle a command", entry_id=entry.id)
            problem = f"worker error: {exc!r}"
        if problem is None:
            handled.append(entry)
        else:
            await retry_bus(
                "dead-letter a command", functools.partial(consumer.dead_letter, entry, problem),
                log=log, shutdown=shutdown,
            )
    if handled:
        await retry_bus("acknowledge commands", functools.partial(consumer.ack, handled),
                        log=log, shutdown=shutdown)


async def retry_bus(what: str, op: Callable[[], Awaitable[None]], *,
                    log: FilteringBoundLogger, shutdown: anyio.Event) -> None:
    """Run ``op`` until Redis takes it (commands are idempotent here), or until it failed
    once a shutdown was requested (what it did not do is then done by the next process)."""
    backoff = Backoff(cap_s=2.0)
    while True:
        try:
            await op()
        except BusError as exc:
            if backoff.attempts == 0 or backoff.attempts % 20 == 0:
                log.warning(f"cannot {what}; retrying", error=str(exc))
            if shutdown.is_set():
                log.warning(f"gave up trying to {what}: shutting down")
                return
            await backoff.sleep()
        else:
            return


__all__ = ["Handler", "command_consumer", "handle_read", "read_commands", "retry_bus"]
