"""Isolated participants under a real ``orchestrator worker`` process: a workload given with
``--workload NAME=module:callable`` runs in a child process that the worker's own death
takes with it (SIGKILL of the worker: no workload is left running)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from helpers import subprocess_env

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.devstack.servers import ServerProcess
from tests.agent.support import FakeDaemon, new_id

TTL_S = 1.5


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}


@pytest.fixture
def worker(redis_server: ServerProcess, namespace: str, tmp_path: Path
           ) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    name = new_id("iso-worker")
    env = subprocess_env({
        "ORCHESTRATOR_REDIS_URL": redis_server.url,
        "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "2",
        "ORCHESTRATOR_S3_URL": (tmp_path / "objects").as_uri(),
        "ORCHESTRATOR_WORKER_TTL_S": str(TTL_S),
        "ORCHESTRATOR_LOG_FORMAT": "json",
    })
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "worker", "--role", "server",
             "--name", name, "--workload",
             "stubborn=tests.agent.isolated_workloads:ignore_sigterm"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
        )
    yield name, popen, log_path
    if popen.poll() is None:
        popen.kill()
        popen.wait(10)


async def test_a_sigkilled_worker_takes_its_workload_process_with_it(
    redis: Redis, keys: Keys, daemon: FakeDaemon, tmp_path: Path,
    worker: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    name, popen, log_path = worker
    with anyio.fail_after(30):
        while not await redis.exists(keys.worker_alive(name)):
            assert popen.poll() is None, log_path.read_text()
            await anyio.sleep(0.05)
    pid_file = tmp_path / "pid"
    start = await daemon.start(name, workload="stubborn", config={"pid_file": str(pid_file)},
                               heartbeat_interval_s=0.2)
    with anyio.fail_after(30):
        while not pid_file.exists() or not pid_file.read_text():
            await anyio.sleep(0.05)
    pid = int(pid_file.read_text())
    await daemon.wait_type(start, "participant.heartbeat", count=2)
    assert _alive(pid)  # the workload runs, in a process that is not the worker's
    assert pid != popen.pid
    popen.kill()
    await anyio.to_thread.run_sync(lambda: popen.wait(10))
    with anyio.move_on_after(10):
        while _alive(pid):
            await anyio.sleep(0.05)
    assert not _alive(pid), "the workload's process outlived its SIGKILLed worker"
