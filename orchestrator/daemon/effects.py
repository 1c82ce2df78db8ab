"""Shared imperative steps: retry transient failures, apply events, commit their effects.

*Commit* is one Redis round trip (``execute_batch``) after the Mongo write: the commands for
workers, the updates for watchers and the XACK of the entries that caused them, in that
order. A crash before it leaves the entries pending, so they are read again; the store then
finds nothing to change (``decide`` is idempotent) and only the acknowledgement is repeated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from orchestrator.bus.packing import execute_batch
from orchestrator.bus.retry import Backoff
from orchestrator.bus.streams import (
    TRANSIENT_REDIS_ERRORS,
    Batch,
    Bus,
    Entry,
    StreamConsumer,
    translated,
)
from orchestrator.errors import BusError, TransientError
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.core import Event, Job
    from orchestrator.store import BatchResult, JobStore

T = TypeVar("T")
_RETRYABLE: tuple[type[Exception], ...] = (TransientError, *TRANSIENT_REDIS_ERRORS)
log = get_logger("orchestrator.daemon")


class Stopping(Exception):  # a signal, not an error
    """Raised by ``Effects.retry`` when the daemon stops while waiting to retry."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Stats:
    """Counters for tests, the bench and logs."""

    batches: int = 0
    events_seen: int = 0
    events_applied: int = 0
    events_ignored: int = 0
    entries_acked: int = 0  # by commits (not counting dead letters)
    status_changes: int = 0
    submissions_accepted: int = 0
    submissions_duplicate: int = 0
    rejections: int = 0
    dispatched: int = 0
    deadlines_fired: int = 0
    commands_sent: int = 0
    cas_retries: int = 0
    transient_errors: int = 0


def worth_announcing(before: Job, after: Job) -> bool:
    """Whether a watcher is told about a change: status, phase, round, error, checkpoints or a
    participant's state. Liveness (heartbeats) and per-participant metrics alone are not
    announced; they are in the store, and the job's round moves with them."""
    if (before.status is not after.status or before.phase is not after.phase
            or before.round != after.round or before.error != after.error
            or before.latest_checkpoint != after.latest_checkpoint
            or before.final_checkpoint != after.final_checkpoint):
        return True
    old = before.participants
    return any(p.state is not old[pid].state for pid, p in after.participants.items())


class Effects:
    """The daemon's write path, shared by event application, admission and the reaper."""

    def __init__(self, store: JobStore, bus: Bus, stopping: anyio.Event, stats: Stats) -> None:
        self.store = store
        self.bus = bus
        self.stopping = stopping
        self.stats = stats
        #: The latest transient failure, for messages such as the CLI's startup timeout.
        self.last_failure: str | None = None
        self.last_attempt: str | None = None

    async def retry(self, op: Callable[[], Awaitable[T]], what: str, *,
                    shield: bool = True) -> T:
        """Run ``op`` until it succeeds; transient failures wait with backoff.

        Each attempt is shielded from cancellation (a write is never torn in half) unless
        ``shield`` is false (reads and startup checks); the wait between attempts is not
        shielded, and ends with ``Stopping`` when the daemon stops.
        """
        backoff = Backoff()
        self.last_attempt = what
        while True:
            try:
                with anyio.CancelScope(shield=shield):
                    return await op()
            except _RETRYABLE as exc:
                self.stats.transient_errors += 1
                self.last_failure = f"{what}: {exc}"
                delay = backoff.next()
                log.warning("transient failure, will retry", what=what, error=str(exc),
                            retry_in_s=round(delay, 3))
                if self.stopping.is_set():
                    raise Stopping(what) from exc
                with anyio.move_on_after(delay):
                    await self.stopping.wait()
                if self.stopping.is_set():
                    raise Stopping(what) from exc

    async def apply(
        self,
        events: Sequence[Event],
        *,
        acks: Sequence[Entry] = (),
        consumer: StreamConsumer | None = None,
        now: datetime | None = None,
    ) -> BatchResult:
        """Apply events through the store (one batch), then commit commands, updates, XACK."""
        result = await self.write(events, now=now)
        await self.commit(result.commands, self.updates_of(result), acks, consumer)
        return result

    async def write(self, events: Sequence[Event], *, now: datetime | None = None
                    ) -> BatchResult:
        """Apply events through the store (one batch, retried while the store is away) and
        count them; committing the result to Redis is the caller's next step."""
        at = now or utcnow()
        result = await self.retry(lambda: self.store.apply_batch(events, at), "apply events")
        self.observe(result)
        return result

    def observe(self, result: BatchResult) -> None:
        """Count and log: status changes at INFO, refused events at INFO, duplicates at DEBUG."""
        stats = self.stats
        stats.batches += 1
        stats.cas_retries += result.cas_retries
        ignored = [o for o in result.outcomes if not o.applied]
        stats.events_applied += len(result.outcomes) - len(ignored)
        stats.events_ignored += len(ignored)
        for outcome in ignored:
            reason = outcome.reason
            if reason.startswith(("refused", "unknown job")):
                log.info("event ignored", job_id=outcome.job_id, event_id=outcome.event_id,
                         reason=reason)
            else:
                log.debug("event changed nothing", job_id=outcome.job_id,
                          event_id=outcome.event_id, reason=reason)
        for change in result.changed:
            if change.quiet:  # liveness or metrics only: no status or phase change
                continue
            before, after = change.before, change.after
            if before.status is not after.status:
                stats.status_changes += 1
                last = after.history[-1]
                log.info("job status changed", job_id=after.id, event_id=last.event_id,
                         from_status=before.status.value, to_status=after.status.value,
                         phase=after.phase.value, reason=last.reason,
                         error=after.error.code.value if after.error else None)
            elif before.phase is not after.phase:
                log.info("job phase changed", job_id=after.id, status=after.status.value,
                         from_phase=before.phase.value, to_phase=after.phase.value)

    @staticmethod
    def updates_of(result: BatchResult) -> list[tuple[Job, str]]:
        """The changed jobs a watcher should hear about, each with its latest reason."""
        return [
            (change.after, change.reason)
            for change in result.changed
            if not change.quiet and worth_announcing(change.before, change.after)
        ]

    async def commit(
        self,
        commands: Sequence[Any],
        updates: Sequence[tuple[Job, str]],
        acks: Iterable[Entry] = (),
        consumer: StreamConsumer | None = None,
    ) -> None:
        """One round trip (``execute_batch``): commands, updates, then XACK (retried while
        Redis is away)."""
        acks = list(acks)
        if not commands and not updates and not acks:
            return

        batch: Batch = []
        self.bus.queue_commands(batch, commands)
        self.bus.queue_updates(batch, updates)
        if consumer is not None:
            consumer.queue_ack(batch, acks)

        async def run() -> None:
            async with translated("commit"):
                await execute_batch(self.bus.redis, batch)

        try:
            await self.retry(run, "commit to redis")
        except BusError as exc:  # e.g. the group vanished: the entries will be read again
            log.warning("commit refused by redis", error=str(exc))
            return
        self.stats.commands_sent += len(commands)
        self.stats.entries_acked += len(acks) if consumer is not None else 0
