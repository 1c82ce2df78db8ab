"""A Flower job on the real stack loses a client: its worker process is SIGKILLed mid-job.

A real in-process daemon (memory store) and worker agents on the real Redis run the server and
two clients; the third client runs in an ``orchestrator worker`` process that is SIGKILLed once
round 2 began. The daemon declares it lost, tells the server's worker, the Grid drops the node
and answers for it, and FedAvg goes on with the other two: with ``min_clients=2`` the job
succeeds, with a checkpoint every round."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

pytest.importorskip("flwr")

from helpers import subprocess_env

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import ErrorCode, JobSpec, JobStatus, ParticipantState, Role
from orchestrator.devstack.servers import ServerProcess
from orchestrator.storage import open_object_store
from orchestrator.store import MemoryJobStore
from tests.agent.support import running_agent
from tests.daemon.harness import (
    daemon_running,
    fast_options,
    wait_finished,
    wait_for_job,
)

pytestmark = pytest.mark.slow
ROUNDS = 6


def _spec(job_id: str) -> JobSpec:
    client = {"app": "tests.flower.apps:slow_client"}
    return JobSpec.model_validate({
        "job_id": job_id, "workload": "flower", "rounds": ROUNDS, "min_clients": 2,
        "server": {"worker": f"{job_id}-srv", "config": {
            "app": "flower_app.server_app:app", "run_config": {"min-nodes": 2}}},
        "clients": [{"worker": f"{job_id}-c{i}", "config": client} for i in range(3)],
        "timeouts": {"heartbeat_s": 1.5, "start_s": 30, "round_s": 60, "job_s": 120},
    })


@pytest.fixture
def doomed_worker(redis_server: ServerProcess, namespace: str,
                  tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The third client's worker, as a real process (its log in ``tmp_path``)."""
    env = subprocess_env({
        "ORCHESTRATOR_REDIS_URL": redis_server.url, "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "2", "ORCHESTRATOR_S3_URL": (tmp_path / "objects").as_uri(),
        "ORCHESTRATOR_WORKER_TTL_S": "1.5", "ORCHESTRATOR_LOG_FORMAT": "json",
    })
    with (tmp_path / "doomed.log").open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "worker", "--role", "client",
             "--name", "flower-lost-c2"], env=env, stdout=log, stderr=subprocess.STDOUT)
    yield popen
    if popen.poll() is None:
        popen.kill()
        popen.wait(10)


async def test_a_sigkilled_client_worker_leaves_the_flower_job_going_on(
        redis: Redis, keys: Keys, tmp_path: Path,
        doomed_worker: subprocess.Popen[bytes]) -> None:
    job_id = "flower-lost"
    store = open_object_store((tmp_path / "objects").as_uri())
    jobs = MemoryJobStore()
    try:
        async with daemon_running(jobs, redis, fast_options(keys.namespace)), \
                running_agent(redis, keys, store, name=f"{job_id}-srv"), \
                running_agent(redis, keys, store, name=f"{job_id}-c0", role=Role.CLIENT), \
                running_agent(redis, keys, store, name=f"{job_id}-c1", role=Role.CLIENT):
            with anyio.fail_after(20):
                while not await redis.exists(keys.worker_alive(f"{job_id}-c2")):
                    assert doomed_worker.poll() is None, (tmp_path / "doomed.log").read_text()
                    await anyio.sleep(0.05)
            await Bus(redis, keys).submit(_spec(job_id).model_dump_json())
            await wait_for_job(jobs, job_id, lambda j: j.round >= 2, timeout_s=30)
            doomed_worker.kill()  # SIGKILL: no event, no goodbye
            await anyio.to_thread.run_sync(lambda: doomed_worker.wait(10))
            job = await wait_finished(jobs, job_id, timeout_s=60)
            checkpoints = await jobs.checkpoints(job_id)
            metrics = await jobs.metrics(job_id)
    finally:
        await store.close()
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    lost = job.participants["client-2"]
    assert lost.state is ParticipantState.FAILED
    assert lost.error is not None and lost.error.code is ErrorCode.WORKER_LOST
    assert sorted(row["round"] for row in checkpoints) == list(range(1, ROUNDS + 1))
    last = {row["participant"]: row for row in metrics if row["round"] == ROUNDS}
    assert last["server"]["metrics"]["train_replies"] == 2  # FedAvg went on with two
    assert {"client-0", "client-1"} <= set(last) and "client-2" not in last
