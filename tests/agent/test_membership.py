"""Membership reaches the workload: when a client is lost, the server's workload learns it and
goes on with the others at once (fedavg here), instead of waiting out its round timeout.

A real in-process daemon (memory store), real worker agents on the real Redis, a real fedavg
job; one client's agent is cancelled outright mid-job (no goodbye: a lost worker)."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, JobSpec, JobStatus, ParticipantState, Role
from orchestrator.storage import ObjectStore
from orchestrator.store import MemoryJobStore
from tests.agent.support import running_agent
from tests.daemon.harness import daemon_running, fast_options, wait_finished, wait_for_job

ROUND_TIMEOUT_S = 60.0  # far beyond what the test may take: waiting it out would fail it


def _spec(job_id: str, min_clients: int) -> JobSpec:
    shared = {"seed": 5, "features": 8, "classes": 3, "round_timeout_s": ROUND_TIMEOUT_S}
    return JobSpec.model_validate({
        "job_id": job_id, "workload": "fedavg", "rounds": 6, "min_clients": min_clients,
        "server": {"worker": f"{job_id}-srv", "config": {**shared, "test_samples": 200}},
        "clients": [{"worker": f"{job_id}-c{i}",
                     "config": {**shared, "samples": 120, "epochs": 1, "lr": 0.1}}
                    for i in range(3)],
        "timeouts": {"heartbeat_s": 1.5, "start_s": 20, "round_s": ROUND_TIMEOUT_S,
                     "job_s": 120},
    })


async def _run(redis: Redis, keys: Keys, store: ObjectStore, job_id: str,
               min_clients: int) -> tuple[float, object]:
    jobs = MemoryJobStore()
    spec = _spec(job_id, min_clients)
    async with daemon_running(jobs, redis, fast_options(keys.namespace)), \
            running_agent(redis, keys, store, name=f"{job_id}-srv"), \
            running_agent(redis, keys, store, name=f"{job_id}-c0", role=Role.CLIENT), \
            running_agent(redis, keys, store, name=f"{job_id}-c1", role=Role.CLIENT):
        async with anyio.create_task_group() as doomed:
            await doomed.start(_client_agent, redis, keys, store, f"{job_id}-c2")
            await Bus(redis, keys).submit(spec.model_dump_json())
            await wait_for_job(jobs, job_id, lambda j: j.round >= 2, timeout_s=20)
            doomed.cancel_scope.cancel()  # the worker dies: no event, no goodbye
        lost_at = anyio.current_time()
        job = await wait_finished(jobs, job_id, timeout_s=30)
    return anyio.current_time() - lost_at, job


async def _client_agent(redis: Redis, keys: Keys, store: ObjectStore, name: str, *,
                        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                        ) -> None:
    async with running_agent(redis, keys, store, name=name, role=Role.CLIENT):
        task_status.started()
        await anyio.sleep_forever()


@pytest.mark.fault("a client worker dies, min_clients holds", invariants=(1,))
async def test_a_lost_client_is_left_behind_at_once_when_min_clients_still_holds(
        redis: Redis, keys: Keys, memory_store: ObjectStore) -> None:
    took_s, job = await _run(redis, keys, memory_store, "member-ok", min_clients=2)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error  # type: ignore[attr-defined]
    lost = job.participants["client-2"]  # type: ignore[attr-defined]
    assert lost.state is ParticipantState.FAILED and lost.error.code is ErrorCode.WORKER_LOST
    assert took_s < ROUND_TIMEOUT_S / 3, f"the server waited {took_s:.1f}s for the lost client"


@pytest.mark.fault("a client worker dies, min_clients broken", invariants=(1,))
async def test_a_lost_client_fails_the_job_promptly_when_min_clients_no_longer_holds(
        redis: Redis, keys: Keys, memory_store: ObjectStore) -> None:
    took_s, job = await _run(redis, keys, memory_store, "member-short", min_clients=3)
    assert job.status is JobStatus.FINISHED_WITH_ERROR  # type: ignore[attr-defined]
    assert job.error.code is ErrorCode.WORKER_LOST  # type: ignore[attr-defined]
    assert took_s < ROUND_TIMEOUT_S / 3
