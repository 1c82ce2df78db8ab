"""The daemon: one anyio task group of intake, event application, admission, reaper, upkeep.

Theory of operation
-------------------
``Daemon.run`` makes sure the store's indexes and the consumer groups exist (retrying while
Redis or Mongo are unreachable), reconciles the non-terminal jobs it finds, then starts its
tasks with ``tg.start`` and reports ready. Each reading task loops *read a batch → handle it →
acknowledge it*; while a batch is being handled its entries are periodically re-claimed so
that no replica mistakes a slow batch for an abandoned one. ``stop()`` (SIGTERM/SIGINT)
cancels only the blocking reads: every task finishes the batch in hand, acknowledges it and
returns, and ``run`` returns. A second signal cancels everything at once; unacknowledged
entries are then read again by the next daemon (same consumer name) or reclaimed.

Correctness across replicas comes from the consumer group (each entry to one replica at a
time) and the store's compare-and-set on ``version`` — no leader, no locks.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Awaitable, Callable, Iterator, Set
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from orchestrator.bus.retry import Backoff
from orchestrator.bus.streams import Bus, Entry, Redis, StreamConsumer
from orchestrator.daemon.admission import Admission
from orchestrator.daemon.effects import Effects, Stats, Stopping, utcnow
from orchestrator.daemon.events import EventApplier
from orchestrator.daemon.intake import Intake
from orchestrator.daemon.options import DaemonOptions, registry_workloads
from orchestrator.daemon.reaper import Reaper
from orchestrator.daemon.reconcile import reconcile
from orchestrator.errors import OrchestratorError
from orchestrator.logs import get_logger
from orchestrator.store import Rejection

if TYPE_CHECKING:
    from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon")

Handler = Callable[[list[Entry]], Awaitable[None]]

#: Upper bound of a read-ahead (a non-blocking XREADGROUP; only a hung Redis takes this long).
READ_AHEAD_TIMEOUT_S = 10.0


class _ReadAhead:
    """The result of a read sent ahead, for ``Daemon.consume``."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._entries: list[Entry] | None = None

    async def fill(self, read: Awaitable[list[Entry] | None]) -> None:
        try:
            self._entries = await read
        finally:
            self._done.set()

    async def entries(self) -> list[Entry] | None:
        await self._done.wait()
        return self._entries


class Daemon:
    """One daemon replica. ``await tg.start(daemon.run)`` returns once it is ready."""

    def __init__(
        self,
        store: JobStore,
        redis: Redis,
        options: DaemonOptions | None = None,
        *,
        workloads: Set[str] | None = None,
    ) -> None:
        self.options = options or DaemonOptions()
        self.keys = self.options.keys
        self.store = store
        self.redis = redis
        self.bus = Bus(redis, self.keys, maxlen=self.options.stream_maxlen)
        self.stats = Stats()
        self.stopping = anyio.Event()
        self.caught_up = anyio.Event()
        self.ready = anyio.Event()
        self._wake = anyio.Event()
        self._stop_scopes: set[anyio.CancelScope] = set()
        self.effects = Effects(store, self.bus, self.stopping, self.stats)
        if workloads is None:
            workloads = self.options.allowed_workloads
        self.intake = Intake(self, workloads if workloads is not None else registry_workloads())
        self.applier = EventApplier(self)
        self.admission = Admission(self)
        self.reaper = Reaper(self)
        self.log = log.bind(consumer=self.options.consumer)

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self, *, task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until ``stop()``; reports ``self`` through ``task_status`` once ready."""
        self.log.info("daemon starting", namespace=self.options.namespace,
                      shards=self.options.event_shards, batch=self.options.batch_size)
        try:
            await self.effects.retry(self.store.ensure_indexes, "MongoDB (ensure indexes)",
                                     shield=False)
            async with anyio.create_task_group() as tg:
                await tg.start(self.applier.run)
                await tg.start(self.intake.run)
                await reconcile(self)
                await tg.start(self.admission.run)
                await tg.start(self.reaper.run)
                await tg.start(self._upkeep)
                self.ready.set()
                self.log.info("daemon ready")
                task_status.started(self)
        except* Stopping:
            self.log.info("daemon stopped during startup")
        else:
            self.log.info("daemon stopped", applied=self.stats.events_applied,
                          rejections=self.stats.rejections)

    def stop(self) -> None:
        """Graceful stop: no new reads; batches in hand are finished and acknowledged."""
        if not self.stopping.is_set():
            self.log.info("daemon stopping: finishing the batches in hand")
        self.stopping.set()
        self._wake.set()
        for scope in list(self._stop_scopes):
            scope.cancel()

    # --- helpers for the tasks -------------------------------------------------------------
    def consumer_of(self, streams: list[str], *, batch: int) -> StreamConsumer:
        """A reader of the daemons' group over ``streams``, as this replica's consumer."""
        opts, keys = self.options, self.keys
        return StreamConsumer(self.redis, streams, keys.daemon_group, opts.consumer,
                              batch=batch, block_ms=opts.block_ms,
                              max_deliveries=opts.max_deliveries,
                              reclaim_idle_ms=opts.reclaim_idle_ms, dead_letter=keys.dead_letter)

    def wake_admission(self) -> None:
        self._wake.set()

    @contextmanager
    def until_stopped(self, seconds: float) -> Iterator[anyio.CancelScope]:
        """A ``move_on_after(seconds)`` scope that ``stop()`` ends too (waits, blocking reads)."""
        with anyio.move_on_after(seconds) as scope:
            if self.stopping.is_set():
                scope.cancel()
            self._stop_scopes.add(scope)
            try:
                yield scope
            finally:
                self._stop_scopes.discard(scope)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when the daemon stops."""
        with anyio.move_on_after(seconds):
            await self.stopping.wait()

    async def sleep_until_woken(self, seconds: float) -> None:
        if not self._wake.is_set():
            with anyio.move_on_after(seconds):
                await self._wake.wait()
        if not self.stopping.is_set():
            self._wake = anyio.Event()

    async def consume(self, consumer: StreamConsumer, handler: Handler, *,
                      caught_up: anyio.Event | None = None, read_ahead: bool = False) -> None:
        """Read → handle → (handler acknowledges) until the daemon stops.

        With ``read_ahead``, the next read is sent as soon as a full batch is in hand, so that
        Redis prepares it on its own core while this one is handled. That read does not block
        (``read_ready``, which never raises: trouble is left to the next ``read``) and a stop
        does not cancel it; the batch it brings is handled even when the daemon stops
        meanwhile, so a graceful stop leaves nothing of it pending, unless the batch in hand
        ends in ``Stopping`` (the store or Redis away at the stop): then both batches stay
        pending, to be read again. The read is shielded for at most ``READ_AHEAD_TIMEOUT_S``,
        which a second signal (a hard stop) also waits out.
        """
        backoff = Backoff()
        async with anyio.create_task_group() as tg:
            ahead: _ReadAhead | None = None
            while True:
                if ahead is not None:
                    entries = await ahead.entries()
                    ahead = None
                else:  # (None once the daemon stops)
                    entries = await self._read(consumer, backoff)
                if entries is None:
                    break
                if (caught_up is not None and not caught_up.is_set()
                        and len(entries) < consumer.batch and not consumer.draining):
                    caught_up.set()
                if not entries:
                    continue
                if read_ahead and len(entries) >= consumer.batch and not self.stopping.is_set():
                    ahead = _ReadAhead()
                    tg.start_soon(ahead.fill, self._read_ahead(consumer))
                if not await self.process(consumer, handler, entries):
                    break

    async def _read_ahead(self, consumer: StreamConsumer) -> list[Entry]:
        """``read_ready``, shielded from ``stop()`` (it does not block, so it is quick; bounded
        anyway, in case Redis hangs): a stop must not lose a reply that is on its way."""
        entries: list[Entry] = []
        with anyio.move_on_after(READ_AHEAD_TIMEOUT_S, shield=True):
            entries = await consumer.read_ready()
        return entries

    async def _read(self, consumer: StreamConsumer, backoff: Backoff) -> list[Entry] | None:
        """One batch (maybe empty), or None once the daemon stops."""
        while not self.stopping.is_set():
            entries: list[Entry] = []
            with self.until_stopped(math.inf) as scope:
                try:
                    entries = await consumer.read()
                    backoff.reset()
                except OrchestratorError as exc:  # refused by Redis (not a connection error)
                    self.log.exception("read failed; retrying", error=str(exc))
                    await self.sleep(backoff.next())
                    continue
            if scope.cancelled_caught and not entries:
                return None
            return entries
        return None

    async def process(self, consumer: StreamConsumer, handler: Handler,
                      entries: list[Entry]) -> bool:
        """Handle one batch, keeping its entries claimed meanwhile. False: stop consuming."""
        go_on = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep_claimed, consumer, entries)
            try:
                await handler(entries)
            except Stopping:
                go_on = False
            except Exception:  # never stop on one batch: its entries stay pending (reclaimed)
                self.log.exception("batch handling failed; entries left pending",
                                   stream=entries[0].stream, count=len(entries))
            finally:
                tg.cancel_scope.cancel()
        return go_on

    async def _keep_claimed(self, consumer: StreamConsumer, entries: list[Entry]) -> None:
        period = max(0.05, consumer.reclaim_idle_ms / 3000)
        while True:
            await anyio.sleep(period)
            try:
                await consumer.touch(entries)
            except OrchestratorError as exc:
                self.log.warning("could not keep batch claimed", error=str(exc))

    async def reject(self, consumer: StreamConsumer, entry: Entry, kind: str, reason: str, *,
                     job_id: str | None = None, payload: str = "") -> None:
        """Record a rejection (store) and dead-letter the entry with the reason (acks it)."""
        rejection = Rejection(
            at=utcnow(), source=entry.stream, entry_id=entry.id, kind=kind, reason=reason,
            job_id=job_id, payload_excerpt=payload[:2048],
        )
        await self.effects.retry(lambda: self.store.record_rejection(rejection),
                                 "record rejection")
        await self.effects.retry(lambda: consumer.dead_letter(entry, f"{kind}: {reason}"),
                                 "dead-letter")
        self.stats.rejections += 1
        self.log.warning("input rejected", kind=kind, reason=reason, job_id=job_id,
                         stream=entry.stream, entry_id=entry.id)

    async def _upkeep(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                      ) -> None:
        """Reclaim abandoned entries (all consumers) and trim streams, periodically."""
        task_status.started()
        opts = self.options
        readers: list[tuple[StreamConsumer, Handler]] = [
            (self.applier.consumer, self.applier.handle),
            (self.intake.consumer, self.intake.handle),
        ]
        next_trim = anyio.current_time() + opts.trim_interval_s
        while not self.stopping.is_set():
            await self.sleep(opts.reclaim_every_s)
            for consumer, handler in readers:
                if self.stopping.is_set():
                    return
                try:
                    claimed = await consumer.reclaim()
                except OrchestratorError as exc:
                    self.log.warning("reclaim failed", error=str(exc))
                    continue
                if claimed and not await self.process(consumer, handler, claimed):
                    return
            if anyio.current_time() >= next_trim:
                next_trim = anyio.current_time() + opts.trim_interval_s
                for consumer, _ in readers:
                    try:
                        removed = await consumer.trim(opts.stream_maxlen)
                    except OrchestratorError as exc:
                        self.log.warning("trim failed", error=str(exc))
                        continue
                    if removed:
                        self.log.info("streams trimmed", removed=removed)


async def _watch_signals(daemon: Daemon, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if daemon.stopping.is_set():
                daemon.log.warning("second signal: stopping now", signal=signum.name)
                scope.cancel()
                return
            daemon.log.info("signal received", signal=signum.name)
            daemon.stop()


async def run_daemon(
    store: JobStore,
    redis: Redis,
    options: DaemonOptions | None = None,
    *,
    workloads: Set[str] | None = None,
    handle_signals: bool = True,
    task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one daemon until stopped (SIGTERM/SIGINT when ``handle_signals``)."""
    daemon = Daemon(store, redis, options, workloads=workloads)
    await serve(daemon, handle_signals=handle_signals, task_status=task_status)


async def serve(
    daemon: Daemon,
    *,
    handle_signals: bool = True,
    task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``daemon`` until stopped; SIGTERM/SIGINT drain it, a second signal ends it now."""
    async with anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(_watch_signals, daemon, tg.cancel_scope)
        await daemon.run(task_status=task_status)
        tg.cancel_scope.cancel()
