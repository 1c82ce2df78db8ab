"""The daemon: a pipeline of tasks joined by memory object streams.

Theory of operation
-------------------
``Daemon.run`` makes sure the store's indexes and the consumer groups exist (retrying while
Redis or Mongo are unreachable), reconciles the jobs that were running, then starts::

    read events ──► EventHandler ─┐
    read submissions ► IntakeHandler ─┤
    upkeep (reclaim) ─► either handler ├──► committer ──► Redis (commands, updates, XACK)
    admission ─────────────────────────┤
    reaper ────────────────────────────┘

Each task gets what it uses as arguments; values travel through anyio memory object streams.
``stop()`` (SIGTERM/SIGINT) makes the readers, admission, the reaper and upkeep finish what
they are doing and close their ends; each handler then drains its stream and closes its end
of the commits stream, and the committer returns once every batch read was committed. So a
graceful stop leaves nothing pending (unless Redis or the store is away then: the work in
hand is left unacknowledged, to be read again). A second signal cancels everything at once.

Correctness across replicas comes from the consumer group (each entry to one replica at a
time) and the store's compare-and-set on ``version``: no leader, no locks.
"""

from __future__ import annotations

import secrets
import signal
from functools import partial

import anyio
import anyio.abc

from orchestrator.bus import Bus, Entry, Redis, StreamConsumer
from orchestrator.core.auth import RunAuth
from orchestrator.daemon.admission import Admission
from orchestrator.daemon.commit import Commit, committer, send
from orchestrator.daemon.events import EventHandler
from orchestrator.daemon.intake import IntakeHandler
from orchestrator.daemon.liveness import Liveness
from orchestrator.daemon.options import DaemonOptions
from orchestrator.daemon.parking import Parked, claim_quietly
from orchestrator.daemon.reading import Reader, handle_batches, read_batches, upkeep
from orchestrator.daemon.reaper import Reaper
from orchestrator.daemon.reconcile import reconcile
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats
from orchestrator.daemon.verify import CheckpointVerifier
from orchestrator.daemon.waits import Wakeup
from orchestrator.logs import get_logger
from orchestrator.storage import ObjectStore
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon")


class Daemon:
    """One daemon replica. ``await tg.start(daemon.run)`` returns once it is ready."""

    def __init__(self, store: JobStore, redis: Redis, options: DaemonOptions | None = None, *,
                 objects: ObjectStore | None = None) -> None:
        self.options = options or DaemonOptions()
        self.keys = self.options.keys
        self.store = store
        self.redis = redis
        self.log = log.bind(consumer=self.options.consumer)
        key = self.options.daemon_key
        if key is None:
            self.log.warning("no daemon key configured: using a random key for this process "
                             "only; other replicas, and this one after a restart, will refuse "
                             "the events of the runs it dispatches")
            key = secrets.token_bytes(32)
        #: Derives run secrets, seals the commands sent (through the bus), checks events.
        self.auth = RunAuth(key)
        self.bus = Bus(redis, self.keys, maxlen=self.options.stream_maxlen, seal=self.auth.seal)
        self.stats = Stats()
        self.stopping = anyio.Event()
        self.ready = anyio.Event()
        self.caught_up = anyio.Event()
        self._scope: anyio.CancelScope | None = None
        self.retry = Retrier(self.stats, self.stopping, self._give_up)
        #: Checks the object of every ``checkpoint.saved`` before it reaches ``decide``.
        self.verifier = CheckpointVerifier(objects) if objects is not None else None
        #: Entries whose checkpoint could not be verified yet (while the pipeline runs).
        self.parked: Parked | None = None
        if objects is None:
            self.log.warning("checkpoint verification is OFF: no object store was given to "
                             "the daemon, so checkpoint.saved events enter the manifest "
                             "unverified")

    def stop(self) -> None:
        """Graceful stop: no new reads; what was read is finished and acknowledged."""
        if not self.stopping.is_set():
            self.log.info("daemon stopping: finishing the batches in hand")
        self.stopping.set()
        if not self.ready.is_set():
            self._give_up()  # still starting: nothing in hand

    def _give_up(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    def consumer(self, streams: list[str], *, batch: int) -> StreamConsumer:
        """A reader of the daemons' group over ``streams``, as this replica's consumer."""
        opts, keys = self.options, self.keys
        return StreamConsumer(self.redis, streams, keys.daemon_group, opts.consumer,
                              batch=batch, block_ms=opts.block_ms,
                              max_deliveries=opts.max_deliveries,
                              reclaim_idle_ms=opts.reclaim_idle_ms, dead_letter=keys.dead_letter)

    async def run(self, *, task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        """Run until ``stop()``; reports ``self`` through ``task_status`` once ready."""
        opts, keys, retry = self.options, self.keys, self.retry
        self.log.info("daemon starting", namespace=opts.namespace, shards=opts.event_shards,
                      batch=opts.batch_size)
        with anyio.CancelScope() as self._scope:
            events = self.consumer([*keys.all_event_streams(), keys.control],
                                   batch=opts.batch_size)
            submissions = self.consumer([keys.submissions], batch=min(opts.batch_size, 500))
            await retry(self.store.ensure_indexes, "MongoDB (ensure indexes)", shield=False)
            await retry(events.ensure_groups, "Redis (create event groups)", shield=False)
            await retry(submissions.ensure_groups, "Redis (create submission group)",
                        shield=False)
            restart = Commit()
            restart.queue(self.bus, await reconcile(self.store, retry))
            await send(self.redis, retry, self.stats, restart)
            await self._pipeline(events, submissions, task_status)
        if self.ready.is_set():
            self.log.info("daemon stopped", store_round_trips=self.store.round_trips,
                          **self.stats.as_dict())
        else:
            self.log.info("daemon stopped during startup")

    async def _pipeline(self, events: StreamConsumer, submissions: StreamConsumer,
                        task_status: anyio.abc.TaskStatus[Daemon]) -> None:
        opts, store, bus, retry, stats = self.options, self.store, self.bus, self.retry, self.stats
        commits_in, commits_out = anyio.create_memory_object_stream[Commit](4)
        events_in, events_out = anyio.create_memory_object_stream[list[Entry]](1)
        intake_in, intake_out = anyio.create_memory_object_stream[list[Entry]](1)
        admit = Wakeup()
        admit.set()  # a first pass at once: jobs may be queued from before
        # held below the reclaim idle time, so the reclaim pass leaves parked entries alone
        parked = self.parked = Parked(hold=partial(claim_quietly, events),
                                      tick_s=min(0.5, opts.reclaim_idle_ms / 3000))
        on_events = EventHandler(store, bus, events, retry, stats, worker_registered=admit.set,
                                 check=self.auth.check, verify=self.verifier,
                                 parked=parked)
        on_submissions = IntakeHandler(store, bus, submissions, retry, stats,
                                       max_bytes=opts.max_submission_bytes,
                                       namespace=opts.namespace,
                                       jobs_waiting=admit.set, liveness=Liveness(bus, retry))
        admission = Admission(store, bus, retry, stats, commits_in.clone(),
                              batch=opts.admission_batch)
        reaper = Reaper(store, bus, retry, stats, commits_in)
        async with anyio.create_task_group() as tg:
            tg.start_soon(committer, commits_out, self.redis, retry, stats)
            tg.start_soon(handle_batches, events_out, on_events, commits_in.clone())
            tg.start_soon(handle_batches, intake_out, on_submissions, commits_in.clone())
            tg.start_soon(partial(read_batches, events, events_in.clone(), self.stopping,
                                  caught_up=self.caught_up))
            tg.start_soon(read_batches, submissions, intake_in.clone(), self.stopping)
            if self.verifier is not None:  # checkpoints S3 could not vouch for yet
                tg.start_soon(parked.run, events_in.clone(), self.stopping)
            tg.start_soon(partial(
                upkeep, [Reader(events, events_in), Reader(submissions, intake_in)],
                self.stopping, every_s=opts.reclaim_every_s, trim_every_s=opts.trim_interval_s,
                maxlen=opts.stream_maxlen))
            tg.start_soon(partial(admission.run, admit, self.stopping,
                                  poll_s=opts.admission_poll_s, idle_s=opts.admission_idle_s))
            tg.start_soon(partial(reaper.run, self.stopping, self.caught_up,
                                  interval_s=opts.reaper_interval_s,
                                  catch_up_wait_s=opts.catch_up_wait_s))
            self.ready.set()
            self.log.info("daemon ready")
            task_status.started(self)


async def _watch_signals(daemon: Daemon, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if daemon.stopping.is_set():
                daemon.log.warning("second signal: stopping now", signal=signum.name)
                scope.cancel()
                return
            daemon.log.info("signal received", signal=signum.name)
            daemon.stop()


async def serve(daemon: Daemon, *, handle_signals: bool = True,
                task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED) -> None:
    """Run ``daemon`` until stopped; SIGTERM/SIGINT drain it, a second signal ends it now."""
    async with anyio.create_task_group() as tg:
        if handle_signals:
            tg.start_soon(_watch_signals, daemon, tg.cancel_scope)
        await daemon.run(task_status=task_status)
        tg.cancel_scope.cancel()


async def run_daemon(store: JobStore, redis: Redis, options: DaemonOptions | None = None, *,
                     handle_signals: bool = True, objects: ObjectStore | None = None,
                     task_status: anyio.abc.TaskStatus[Daemon] = anyio.TASK_STATUS_IGNORED
                     ) -> None:
    """Run one daemon until stopped (SIGTERM/SIGINT when ``handle_signals``)."""
    await serve(Daemon(store, redis, options, objects=objects),
                handle_signals=handle_signals, task_status=task_status)
