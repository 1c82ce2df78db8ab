"""The commit: one Redis round trip per batch, after the store write.

Commands for workers, updates for watchers (at most one per job per batch) and the XACK of
the entries that caused them, in that order, through ``execute_batch``. A crash before it
leaves the entries pending: they are read again, the store finds nothing to change (``decide``
is idempotent) and only the commit is repeated. One committer task sends every producer's
commits, one at a time, in the order each producer sent them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from anyio.abc import ObjectReceiveStream

from orchestrator.bus import Batch, Bus, Entry, Redis, StreamConsumer, execute_batch, translated
from orchestrator.core import Command, Decision, Job
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats
from orchestrator.errors import BusError
from orchestrator.logs import get_logger

log = get_logger("orchestrator.daemon")


@dataclass(slots=True)
class Commit:
    """What one batch sends to Redis."""

    batch: Batch = field(default_factory=list)
    commands: int = 0
    acks: int = 0

    def add(self, bus: Bus, commands: Sequence[Command] = (),
            decisions: Iterable[Decision] = ()) -> None:
        """Queue commands and the update of every decision a watcher should hear of."""
        self.queue(bus, commands, [(d.job, d.reason) for d in decisions if d.announce])

    def queue(self, bus: Bus, commands: Sequence[Command],
             updates: Sequence[tuple[Job, str]] = ()) -> None:
        """Queue commands for workers and (job, reason) updates for watchers."""
        bus.queue_commands(self.batch, commands)
        bus.queue_updates(self.batch, updates)
        self.commands += len(commands)

    def ack(self, consumer: StreamConsumer, entries: Sequence[Entry]) -> None:
        consumer.queue_ack(self.batch, entries)
        self.acks += len(entries)


async def send(redis: Redis, retry: Retrier, stats: Stats, commit: Commit) -> None:
    """Send one commit (retried while Redis is away)."""
    if not commit.batch:
        return

    async def run() -> None:
        async with translated("commit"):
            await execute_batch(redis, commit.batch)

    started = time.perf_counter()
    try:
        await retry(run, "commit to redis")
    except BusError as exc:  # e.g. the group vanished: the entries will be read again
        log.warning("commit refused by redis", error=str(exc))
        return
    stats.commit_seconds.observe(time.perf_counter() - started)
    stats.commands_sent += commit.commands
    stats.entries_acked += commit.acks
    if commit.acks:
        stats.batch_sizes.observe(commit.acks)


async def committer(commits: ObjectReceiveStream[Commit], redis: Redis, retry: Retrier,
                    stats: Stats) -> None:
    """Send commits until every producer has closed its end of the stream."""
    async with commits:
        async for commit in commits:
            await send(redis, retry, stats, commit)
