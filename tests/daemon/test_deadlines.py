"""Deadlines (heartbeat loss, start timeout), startup reconciliation, store outages."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, Job, JobDispatched, JobStatus, ParticipantState, new_job
from orchestrator.daemon import Daemon
from orchestrator.daemon.apply import apply_events
from orchestrator.errors import StoreUnavailableError
from orchestrator.store import JobWrite, MemoryJobStore
from tests.daemon.harness import (
    assert_history_sane,
    daemon_pending,
    daemon_running,
    fast_options,
    job_spec,
    running,
    wait_finished,
    wait_for_job,
    workers_for,
)


@pytest.mark.fault("a participant goes silent", invariants=(1,))
async def test_silent_participant_fails_the_job_within_its_heartbeat_timeout(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=2, modes={"cli1": "silent", "srv": "hang",
                                                         "cli0": "hang"})
    async with (daemon_running(store, redis, fast_options(keys.namespace)),
                running(*(w.run for w in workers))):
        await Bus(redis, keys).submit(
            job_spec("lost", clients=2, heartbeat_s=1.0).model_dump_json())
        started = await wait_for_job(
            store, "lost", lambda j: j.participants["client-1"].state == "started")
        t0 = time.monotonic()
        job = await wait_finished(store, "lost", timeout_s=5)
        elapsed = time.monotonic() - t0
        # Stop commands go out right after the store write; give the workers a moment.
        with anyio.move_on_after(2):
            while not {"server", "client-0"} <= {s.participant for w in workers for s in w.stops}:
                await anyio.sleep(0.01)
        stopped = {s.participant for w in workers for s in w.stops}
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None
    assert job.error.code is ErrorCode.WORKER_LOST
    assert job.error.participant == "client-1"
    assert job.participants["client-1"].state is ParticipantState.FAILED, job.participants
    assert elapsed <= 1.0 + 0.6, f"took {elapsed:.2f}s after start; heartbeat timeout 1s"
    assert started.participants["client-1"].last_seen is not None
    assert {"server", "client-0"} <= stopped, "the others were told to stop"
    assert_history_sane(job)


@pytest.mark.fault("workers never come", invariants=(1,))
async def test_job_whose_workers_never_come_cannot_be_scheduled(redis: Redis,
                                                                keys: Keys) -> None:
    store = MemoryJobStore()
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await Bus(redis, keys).submit(
            job_spec("nobody", clients=1, server="ghost", start_s=0.5).model_dump_json())
        job = await wait_finished(store, "nobody", timeout_s=5)
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None
    assert job.error.code is ErrorCode.CANNOT_SCHEDULE


async def test_job_waits_for_workers_and_starts_when_they_register(redis: Redis,
                                                                   keys: Keys) -> None:
    store = MemoryJobStore()
    async with daemon_running(store, redis, fast_options(keys.namespace, admission_poll_s=30)):
        await Bus(redis, keys).submit(job_spec("late-workers", clients=1).model_dump_json())
        await anyio.sleep(0.3)
        assert (await store.get("late-workers")).status is JobStatus.NOT_STARTED
        t0 = time.monotonic()
        async with running(*(w.run for w in workers_for(redis, keys, clients=1))):
            job = await wait_finished(store, "late-workers")
        took = time.monotonic() - t0
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert took < 5, "registration woke admission (its poll is 30 s here)"


async def test_min_clients_lets_a_job_start_without_an_absent_client(redis: Redis,
                                                                     keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1)  # cli1 never shows up
    async with (daemon_running(store, redis, fast_options(keys.namespace)),
                running(*(w.run for w in workers))):
        await Bus(redis, keys).submit(
            job_spec("k-of-n", clients=2, min_clients=1).model_dump_json())
        job = await wait_finished(store, "k-of-n")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert job.participants["client-1"].state is ParticipantState.SKIPPED


async def test_startup_reconciliation_resends_start_commands(redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    now = datetime.now(UTC)
    job = new_job("orphan", job_spec("orphan", clients=1), now)
    await store.create(job)
    runs = {p: uuid.uuid4().hex for p in job.participants}
    await apply_events(store, [JobDispatched(event_id="dispatch.orphan", job_id="orphan",
                                             assignments=runs)], now)
    # The previous daemon died before its start commands reached Redis.
    workers = workers_for(redis, keys, clients=1)
    async with (running(*(w.run for w in workers)),
                daemon_running(store, redis, fast_options(keys.namespace))):
        done = await wait_finished(store, "orphan")
    assert done.status is JobStatus.FINISHED_SUCCESSFULLY
    assert {r for w in workers for r in w.started_runs} == set(runs.values()), "same run ids"


class FlakyStore(MemoryJobStore):
    """Fails the first ``failures`` CAS writes of running jobs as if MongoDB were
    unreachable."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.failed = 0

    async def cas_many(self, writes: Sequence[JobWrite]) -> set[str]:
        running = any(w.job.status is not JobStatus.NOT_STARTED and w.history == ()
                      for w in writes)
        if self.failed < self.failures and running:
            self.failed += 1
            raise StoreUnavailableError("simulated outage")
        return await super().cas_many(writes)


@pytest.mark.fault("the store fails mid-batch", invariants=(1, 3, 5))
async def test_store_outage_during_a_batch_means_no_ack_and_no_loss(redis: Redis,
                                                                    keys: Keys) -> None:
    store = FlakyStore(failures=4)
    workers = workers_for(redis, keys, clients=1)
    async with (daemon_running(store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers))):
        await Bus(redis, keys).submit(job_spec("outage", clients=1).model_dump_json())
        job = await wait_finished(store, "outage")
        await anyio.sleep(0.2)
        pending = await daemon_pending(redis, keys.all_event_streams())
    assert store.failed == 4
    assert daemon.stats.transient_errors >= 4
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert_history_sane(job)
    assert pending == 0
    assert len(await store.metrics("outage")) == 2 * 2


class DownStore(MemoryJobStore):
    async def find_active(self, *args: object, **kwargs: object) -> list[Job]:
        raise StoreUnavailableError("down")


async def test_stop_while_waiting_for_the_store_at_startup_returns_cleanly(
        redis: Redis, keys: Keys) -> None:
    daemon = Daemon(DownStore(), redis, fast_options(keys.namespace))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(daemon.run)
            await anyio.sleep(0.3)
            assert not daemon.ready.is_set()
            assert daemon.stats.transient_errors >= 1
            daemon.stop()
    assert not daemon.ready.is_set()
