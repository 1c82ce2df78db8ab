"""The daemon end to end with simulated workers on real Redis."""

from __future__ import annotations

import json

import anyio

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import JobStatus, ParticipantState
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    assert_history_sane,
    daemon_pending,
    daemon_running,
    fast_options,
    job_spec,
    rows,
    running,
    wait_finished,
    workers_for,
)


async def test_happy_path_job_finishes_successfully(redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=2)
    async with (daemon_running(store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers))):
        bus = Bus(redis, keys)
        await bus.submit(job_spec("happy", clients=2, rounds=3).model_dump_json())
        job = await wait_finished(store, "happy")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    assert_history_sane(job)
    assert [h.to_status for h in job.history] == [
        JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY]
    assert job.participants["server"].state is ParticipantState.FINISHED
    assert job.round == 3
    metric_rows = await store.metrics("happy")
    assert {(r["participant"], r["round"]) for r in metric_rows} == {
        (p, r) for p in ("server", "client-0", "client-1") for r in (1, 2, 3)}
    assert daemon.stats.rejections == 0
    assert await daemon_pending(redis, [*keys.all_event_streams(), keys.submissions,
                                        keys.control]) == 0
    updates = [u for u in (json.loads(f[b"update"]) for _, f in await rows(redis, keys.updates))
               if u["job_id"] == "happy"]
    # Its workers were alive: the job was created already dispatched (one insert, one update).
    assert updates[0]["status"] == "IN_PROGRESS"
    assert updates[0]["reason"] == "dispatched"
    assert updates[-1]["status"] == "FINISHED_SUCCESSFULLY"
    versions = [u["version"] for u in updates]
    assert versions == sorted(set(versions)), "at most one update per change, in order"
    # Liveness and a participant starting are not announced: fewer updates than versions.
    assert len(updates) < versions[-1]
    await anyio.sleep(0)
