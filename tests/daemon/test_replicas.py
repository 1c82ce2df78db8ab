"""Several daemon replicas on the same streams and store; bad events on the bus."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import Heartbeat, JobDispatched, JobStatus, new_job
from orchestrator.daemon.apply import apply_events
from orchestrator.devstack.servers import ServerProcess
from orchestrator.store import MemoryJobStore, MongoJobStore, connect_mongo
from tests.daemon.harness import (
    assert_history_sane,
    daemon_pending,
    daemon_running,
    dead_letters,
    fast_options,
    job_spec,
    run_secret_for,
    running,
    signed,
    wait_finished,
    workers_for,
)
from tests.helpers import unique

JOBS = 12


@pytest.fixture
async def mongo_store(mongo_server: ServerProcess) -> AsyncIterator[MongoJobStore]:
    store = connect_mongo(mongo_server.url, unique("db"))
    yield store
    await store.close()


@pytest.mark.fault("two daemon replicas on one stream", invariants=(1, 3, 5))
async def test_two_replicas_apply_each_event_once(redis: Redis, keys: Keys,
                                                  mongo_store: MongoJobStore) -> None:
    workers = workers_for(redis, keys, clients=2, step_s=0.005)
    bus = Bus(redis, keys)
    one = fast_options(keys.namespace, consumer="replica-1", batch_size=20)
    two = fast_options(keys.namespace, consumer="replica-2", batch_size=20)
    async with (daemon_running(mongo_store, redis, one) as d1,
                daemon_running(mongo_store, redis, two) as d2,
                running(*(w.run for w in workers))):
        for i in range(JOBS):
            await bus.submit(job_spec(f"rep-{i}", clients=2, rounds=3).model_dump_json())
        jobs = [await wait_finished(mongo_store, f"rep-{i}", timeout_s=30) for i in range(JOBS)]
        await anyio.sleep(0.3)
        pending = await daemon_pending(redis, [*keys.all_event_streams(), keys.submissions])
    sent = sum(len(w.sent) for w in workers)
    assert all(j.status is JobStatus.FINISHED_SUCCESSFULLY for j in jobs), [
        (j.id, j.status, j.error) for j in jobs]
    for job in jobs:
        assert_history_sane(job)
        assert [h.to_status for h in job.history] == [
            JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY]
        assert len(await mongo_store.metrics(job.id)) == 3 * 3
    # Each entry went to exactly one replica (no reclaim happened: nothing was idle).
    assert d1.stats.events_seen + d2.stats.events_seen == sent
    assert d1.stats.submissions_accepted + d2.stats.submissions_accepted == JOBS
    assert d1.stats.status_changes + d2.stats.status_changes == 2 * JOBS
    assert pending == 0


@pytest.mark.fault("bad events dead-lettered, daemon carries on", invariants=(5, 8))
async def test_bad_events_are_dead_lettered_and_the_daemon_carries_on(redis: Redis,
                                                                      keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1)
    bus = Bus(redis, keys)
    stream = keys.events(0)
    async with (daemon_running(store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers))):
        await redis.xadd(stream, {b"event": b"{oops"})
        await redis.xadd(stream, {b"event": b'{"type": "participant.exploded"}'})
        await redis.xadd(stream, {b"other": b"1"})
        forged = JobDispatched(event_id="forged", job_id="j", assignments={"server": "r"})
        await redis.xadd(stream, {b"event": forged.model_dump_json()})
        await redis.xadd(keys.control, {b"type": b"reboot"})
        await redis.xadd(keys.control, {b"type": b"cancel"})  # no job id
        hb = Heartbeat(event_id="hb", job_id="j", participant="server", worker="srv")
        await redis.xadd(stream, {b"event": hb.model_dump_json()[:-1] + ', "x": 1}'})
        await bus.submit(job_spec("fine", clients=1).model_dump_json())
        job = await wait_finished(store, "fine")
        await anyio.sleep(0.2)
        pending = await daemon_pending(redis, [*keys.all_event_streams(), keys.control])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    kinds = sorted(r.kind for r in await store.rejections())
    assert kinds == sorted(["invalid_event", "invalid_event", "missing_event",
                            "forbidden_event", "invalid_control", "invalid_control",
                            "invalid_event"])
    assert len(await dead_letters(redis, keys)) == 7
    assert daemon.stats.rejections == 7
    assert pending == 0


@pytest.mark.fault("a replica dies holding an entry: reclaimed", invariants=(1, 5))
async def test_entries_of_a_dead_replica_are_reclaimed_and_applied(redis: Redis,
                                                                  keys: Keys) -> None:
    from orchestrator.bus import StreamConsumer  # noqa: PLC0415

    store = MemoryJobStore()
    bus = Bus(redis, keys)
    ghost = StreamConsumer(redis, [keys.submissions], keys.daemon_group, "ghost", block_ms=50)
    await ghost.ensure_groups()
    await bus.submit(job_spec("orphaned", clients=1).model_dump_json())
    assert len(await ghost.read()) == 1  # the ghost replica took it, then died
    workers = workers_for(redis, keys, clients=1)
    options = fast_options(keys.namespace, reclaim_idle_ms=300)
    async with (daemon_running(store, redis, options),
                running(*(w.run for w in workers))):
        job = await wait_finished(store, "orphaned", timeout_s=10)
        await anyio.sleep(0.2)
        pending = await daemon_pending(redis, [keys.submissions])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert pending == 0


@pytest.mark.fault("graceful stop mid-backlog, restart", invariants=(3, 5))
async def test_full_batches_survive_a_stop_and_are_applied_once(redis: Redis,
                                                                keys: Keys) -> None:
    """Stopping the daemon part-way through a backlog of full batches leaves nothing lost or
    unacknowledged, and a restart applies the rest: every event changes its job once. The
    stop is deterministic: every batch read before it is applied and acknowledged."""
    store = MemoryJobStore()
    now = datetime.now(UTC)
    jobs = [new_job(f"ahead-{i}", job_spec(f"ahead-{i}", clients=1), now) for i in range(4)]
    await store.insert_many(jobs)
    await apply_events(store, [JobDispatched(event_id=f"d-{j.id}", job_id=j.id,
                                             assignments={p: "run" for p in j.participants})
                               for j in jobs], now)
    beats = [signed(Heartbeat(event_id=f"{j.id}-{pid}-{seq}", job_id=j.id, participant=pid,
                              worker=j.participants[pid].worker, seq=seq),
                    run_secret_for(j.id, pid, "run"))
             for seq in range(1, 101) for j in jobs for pid in j.participants]
    await Bus(redis, keys).publish_events(beats)
    # Every batch full, so the daemon has not caught up when it is stopped: the reaper is
    # still waiting (up to 30 s) for it to, and the stop must not wait for that.
    options = fast_options(keys.namespace, batch_size=10, catch_up_wait_s=30)
    async with daemon_running(store, redis, options) as first:
        with anyio.fail_after(20):
            while first.stats.events_applied < len(beats) // 3:
                await anyio.sleep(0.001)
        assert not first.caught_up.is_set()
        stop_began = time.monotonic()
    assert time.monotonic() - stop_began < 5, "the stop waited for the catch-up wait"
    assert first.stats.events_applied < len(beats), "stopped part-way"
    # The stop drained: every batch read was applied and its commit sent.
    assert await daemon_pending(redis, keys.all_event_streams()) == 0
    assert first.stats.entries_acked == first.stats.events_applied
    async with daemon_running(store, redis, options) as second:
        with anyio.fail_after(20):
            while any(p.last_seq < 100
                      for job in (await store.load_many([j.id for j in jobs])).values()
                      for p in job.participants.values()):
                await anyio.sleep(0.01)
        await anyio.sleep(0.2)
        pending = await daemon_pending(redis, keys.all_event_streams())
    assert pending == 0
    assert first.stats.rejections == second.stats.rejections == 0
    # Every heartbeat changed its job exactly once: none lost (one delivered again would be
    # ignored, its seq no longer above the last: idempotence, not checked by this count).
    assert first.stats.events_applied + second.stats.events_applied == len(beats)
    final = await store.load_many([j.id for j in jobs])
    assert all(j.status is JobStatus.IN_PROGRESS for j in final.values())
