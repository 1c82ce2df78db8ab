"""``orchestrator worker`` as a real process: SIGTERM stops cleanly, SIGKILL goes silent."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest
from helpers import subprocess_env

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.status import Role
from orchestrator.devstack.servers import ServerProcess
from tests.agent.support import FakeDaemon, new_id

TTL_S = 1.5


class WorkerProcess:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


SpawnWorker = Callable[[Role], WorkerProcess]


@pytest.fixture
def spawn_worker(
    redis_server: ServerProcess, namespace: str, tmp_path: Path
) -> Iterator[SpawnWorker]:
    started: list[WorkerProcess] = []

    def spawn(role: Role = Role.CLIENT) -> WorkerProcess:
        name = new_id(f"proc-{role.value}")
        env = subprocess_env({
            "ORCHESTRATOR_REDIS_URL": redis_server.url,
            "ORCHESTRATOR_NAMESPACE": namespace,
            "ORCHESTRATOR_EVENT_SHARDS": "2",
            "ORCHESTRATOR_S3_URL": (tmp_path / "objects").as_uri(),
            "ORCHESTRATOR_WORKER_TTL_S": str(TTL_S),
            "ORCHESTRATOR_LOG_FORMAT": "json",
        })
        log_path = tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", "worker", "--role", role.value,
                 "--name", name, "--capacity", "2"],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(name, popen, log_path)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        if worker.popen.poll() is None:
            worker.popen.kill()
            worker.popen.wait(10)


async def wait_alive(redis: Redis, keys: Keys, worker: WorkerProcess) -> None:
    with anyio.move_on_after(20):
        while not await redis.exists(keys.worker_alive(worker.name)):
            assert worker.popen.poll() is None, worker.log()
            await anyio.sleep(0.05)
        return
    raise AssertionError(f"worker did not register:\n{worker.log()}")


async def test_sigterm_stops_the_participant_and_exits_0(
    redis: Redis, keys: Keys, daemon: FakeDaemon, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker(Role.CLIENT)
    await wait_alive(redis, keys, worker)
    start = await daemon.start(
        worker.name, participant="client-0", role=Role.CLIENT, workload="sleep",
        config={"seconds": 60}, heartbeat_interval_s=0.2,
    )
    await daemon.wait_type(start, "participant.heartbeat")
    worker.popen.send_signal(signal.SIGTERM)
    code = await anyio.to_thread.run_sync(lambda: worker.popen.wait(20))
    assert code == 0, worker.log()
    stopped = await daemon.wait_terminal(start, timeout_s=5)
    assert stopped.type == "participant.stopped", worker.log()
    assert stopped.reason == "worker shutting down"
    assert await redis.exists(keys.worker_alive(worker.name)) == 0
    assert "Traceback" not in worker.log()


@pytest.mark.fault("a worker SIGKILLed mid-job", invariants=(1, 7))
async def test_sigkill_mid_job_stops_heartbeats_and_registration(
    redis: Redis, keys: Keys, daemon: FakeDaemon, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker(Role.SERVER)
    await wait_alive(redis, keys, worker)
    start = await daemon.start(
        worker.name, workload="sleep", rounds=20, config={"seconds": 60},
        heartbeat_interval_s=0.1,
    )
    await daemon.wait_type(start, "participant.heartbeat", count=3)
    worker.popen.kill()
    await anyio.to_thread.run_sync(lambda: worker.popen.wait(10))
    await anyio.sleep(0.2)
    await daemon.poll()
    count = len(daemon.of(start.job_id))
    await anyio.sleep(TTL_S + 0.5)
    await daemon.poll()
    assert len(daemon.of(start.job_id)) == count  # silence: no heartbeat, no terminal event
    assert await redis.exists(keys.worker_alive(worker.name)) == 0  # registration expired


def test_worker_rejects_a_bad_name() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "worker", "--role", "client",
         "--name", "bad name!"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "invalid worker name" in result.stderr
