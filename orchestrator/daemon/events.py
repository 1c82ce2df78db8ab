"""Event application: event shards + control stream → ``decide`` in batches → commit → XACK.

One batch: parse every entry with the pre-built ``EVENT_ADAPTER`` (unparseable → rejection +
dead letter), one ``store.apply_batch`` (one load, one bulk CAS, one records upsert), then one
Redis round trip (``execute_batch``) with the commands, the watcher updates and the XACK.
Transient store failures are retried with backoff while the batch is held; nothing is
acknowledged before the write. If the batch as a whole fails for any other reason, its events
are applied one by one so a single poison event is dead-lettered alone.

Redis works while the daemon computes: the next batch is read ahead as soon as a full one is
in hand (``Daemon.consume(read_ahead=True)``), and a batch's commit runs behind, while the
next batch is decided. Commits stay one at a time and in order (each waits for the one
before), and always after their own batch's store write, so the invariants do not change: a
crash before a commit leaves its entries pending, and they are applied again (idempotently).
A commit behind no longer keeps its entries claimed (``Daemon._keep_claimed`` ends with the
batch's handling); while it retries (Redis away) no replica can reclaim them anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from orchestrator.bus.streams import Entry
from orchestrator.core import (
    EVENT_ADAPTER,
    CancelRequested,
    DeadlineExpired,
    Event,
    JobDispatched,
)
from orchestrator.daemon.effects import Stopping, utcnow
from orchestrator.daemon.intake import summarize
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.daemon.app import Daemon
    from orchestrator.store import BatchResult

log = get_logger("orchestrator.daemon.events")

#: Event types only the daemon itself may produce; on the bus they are forgeries.
INTERNAL_EVENTS = (JobDispatched, DeadlineExpired)


class EventApplier:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        keys = daemon.keys
        self.control = keys.control
        self.consumer = daemon.consumer_of([*keys.all_event_streams(), keys.control],
                                           batch=daemon.options.batch_size)
        # Commit-behind: a batch's commit (commands, updates, XACK) runs while the next batch
        # is handled. One at a time and in order: each waits for the one before it.
        self._commit_turn = anyio.Lock()
        self._committed = anyio.Event()
        self._committed.set()
        self._commits: anyio.abc.TaskGroup | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        await self.daemon.effects.retry(self.consumer.ensure_groups,
                                        "Redis (create event consumer groups)", shield=False)
        task_status.started()
        overlap = self.daemon.options.overlap
        async with anyio.create_task_group() as commits:  # exits once the last commit is done
            self._commits = commits if overlap else None
            try:
                await self.daemon.consume(self.consumer, self.handle,
                                          caught_up=self.daemon.caught_up, read_ahead=overlap)
            finally:
                self._commits = None

    async def _commit(self, result: BatchResult | None, acks: list[Entry]) -> None:
        """Commit a written batch: behind (in the background, while the next batch is
        handled) when the applier runs, in place otherwise (e.g. reclaimed entries after it
        stopped). Either way after every earlier commit of this applier."""
        if result is None and not acks:
            return  # (e.g. every entry of the batch was rejected: nothing to commit)
        async with self._commit_turn:
            await self._committed.wait()
            done = self._committed = anyio.Event()
            if self._commits is not None:
                self._commits.start_soon(self._commit_now, result, acks, done)
                return
        await self._commit_now(result, acks, done)

    async def flush(self) -> None:
        """Wait until every commit started so far is done."""
        async with self._commit_turn:
            await self._committed.wait()

    async def _commit_now(self, result: BatchResult | None, acks: list[Entry],
                          done: anyio.Event) -> None:
        effects = self.daemon.effects
        try:
            if result is None:
                await effects.commit((), (), acks, self.consumer)
            else:
                await effects.commit(result.commands, effects.updates_of(result), acks,
                                     self.consumer)
        except Stopping:  # stopped while Redis was away: the entries stay pending
            pass
        except Exception as exc:  # a bug: never lose the applier; the entries stay pending
            log.exception("commit failed; the batch's entries stay pending", error=str(exc))
        finally:
            done.set()

    def _parse(self, entry: Entry) -> Event | tuple[str, str, str | None]:
        """The event of an entry, or (kind, reason, job_id) of why it cannot be one."""
        fields = entry.fields
        if entry.stream == self.control:
            kind = fields.get("type")
            if kind == "cancel":
                try:
                    return CancelRequested(
                        event_id=f"cancel.{entry.id}",
                        job_id=fields.get("job_id", ""),
                        reason=fields.get("reason") or "cancelled by user",
                        requested_by=fields.get("requested_by"),
                    )
                except ValidationError as exc:
                    return "invalid_control", f"invalid cancel request: {summarize(exc)}", None
            return "invalid_control", f"unknown control type {kind!r}", fields.get("job_id")
        raw = fields.get("event")
        if raw is None:
            return "missing_event", f"entry has no 'event' field (fields: {sorted(fields)})", None
        try:
            event = EVENT_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            return "invalid_event", f"invalid event: {summarize(exc)}", None
        if isinstance(event, INTERNAL_EVENTS):
            return ("forbidden_event",
                    f"{event.type} events are produced by the daemon only, not accepted from "
                    "the bus", event.job_id)
        return event

    async def handle(self, entries: list[Entry]) -> None:
        daemon = self.daemon
        wakeups: list[Entry] = []  # admission wake-ups: acknowledged, nothing to apply
        events: list[Event] = []
        carriers: list[Entry] = []  # the entry of each event, in step with ``events``
        for entry in entries:
            fields = entry.fields
            if not fields:
                await daemon.reject(self.consumer, entry, "deleted_entry",
                                    "entry was deleted from the stream before it was applied")
                continue
            if entry.stream == self.control and fields.get("type") == "worker_registered":
                daemon.wake_admission()
                wakeups.append(entry)
                continue
            try:
                parsed = self._parse(entry)
            except Exception as exc:  # one entry that breaks parsing is rejected alone
                parsed = ("unprocessable",
                          f"parsing the entry failed: {type(exc).__name__}: {exc}", None)
            if isinstance(parsed, tuple):
                kind, reason, job_id = parsed
                await daemon.reject(self.consumer, entry, kind, reason, job_id=job_id,
                                    payload=fields.get("event") or str(fields))
                continue
            events.append(parsed)
            carriers.append(entry)
        daemon.stats.events_seen += len(events)
        if not events:
            await self._commit(None, wakeups)
            return
        try:
            result = await daemon.effects.write(events)
        except Stopping:
            raise
        except Exception as exc:  # a bug or a corrupt document: isolate the poison event
            log.exception("batch failed; applying its events one by one", error=str(exc))
            await self._commit(None, wakeups)
            await self.flush()  # (in order: the one-by-one path commits in place)
            await self._one_by_one(list(zip(events, carriers, strict=True)))
            return
        await self._commit(result, wakeups + carriers)

    async def _one_by_one(self, pairs: list[tuple[Event, Entry]]) -> None:
        daemon = self.daemon
        for event, entry in pairs:
            try:
                await daemon.effects.apply([event], acks=[entry], consumer=self.consumer,
                                           now=utcnow())
            except Stopping:
                raise
            except Exception as exc:
                await daemon.reject(self.consumer, entry, "apply_failed",
                                    f"applying {event.type} failed: {type(exc).__name__}: {exc}",
                                    job_id=event.job_id, payload=entry.fields.get("event", ""))
