"""One end-to-end run on a three-primary cluster: a real ``orchestrator daemon`` process and
real ``orchestrator worker`` processes, all on a ``redis+cluster://`` URL, run fedavg jobs
(commands to three workers' streams, events on three shards on three nodes, mailboxes,
checkpoints). Every job succeeds, nothing is left pending, nothing is dead-lettered, and
``orchestrator workers`` and ``status`` work on the same URL."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from orchestrator.bus import Bus, Keys, Redis
from orchestrator.core import JobSpec, JobStatus
from orchestrator.devstack.cluster import ClusterProcess
from orchestrator.devstack.servers import ServerProcess
from orchestrator.store import connect_mongo
from tests.daemon.harness import TEST_DAEMON_KEY, daemon_pending, dead_letters, wait_finished
from tests.helpers import run_cli, subprocess_env, unique

pytestmark = pytest.mark.slow
SERVER, CLIENTS = "cl-server", ["cl-client-0", "cl-client-1"]


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        with (self.log_dir / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", *args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-3000:]}" for name in self.procs)

    def check_running(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def namespace() -> str:
    return unique("cluster")


@pytest.fixture
def processes(tmp_path: Path, redis_cluster: ClusterProcess, mongo_server: ServerProcess,
              namespace: str) -> Iterator[Processes]:
    env = subprocess_env({
        "ORCHESTRATOR_REDIS_URL": redis_cluster.url,
        "ORCHESTRATOR_MONGO_URL": mongo_server.url,
        "ORCHESTRATOR_MONGO_DB": f"db-{namespace}",
        "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "3",
        "ORCHESTRATOR_S3_URL": (tmp_path / "objects").as_uri(),
        "ORCHESTRATOR_BLOCK_MS": "200",
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode(),
    })
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop()


def _spec(i: int) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": f"cluster-job-{i}",
        "workload": "fedavg",
        "rounds": 2,
        "server": {"worker": SERVER, "config": {"seed": i, "features": 4, "classes": 2,
                                                "test_samples": 50}},
        "clients": [{"worker": c, "config": {"seed": i, "features": 4, "classes": 2,
                                         "samples": 40, "epochs": 1}}
                    for c in CLIENTS],
        "timeouts": {"start_s": 60, "heartbeat_s": 15, "round_s": 60, "job_s": 120},
    })


async def test_fedavg_jobs_run_end_to_end_on_the_cluster(
        processes: Processes, cluster_redis: Redis, mongo_server: ServerProcess,
        namespace: str) -> None:
    keys = Keys(namespace, event_shards=3)
    bus = Bus(cluster_redis, keys)
    store = connect_mongo(mongo_server.url, f"db-{namespace}")
    processes.start("daemon", "daemon", "--consumer", "cluster-d1")
    processes.start(SERVER, "worker", "--role", "server", "--name", SERVER)
    for client in CLIENTS:
        processes.start(client, "worker", "--role", "client", "--name", client)
    try:
        with anyio.fail_after(60):
            while set(await bus.alive_workers()) != {SERVER, *CLIENTS}:
                processes.check_running()
                await anyio.sleep(0.1)
            while b"daemon ready" not in (processes.log_dir / "daemon.log").read_bytes():
                processes.check_running()
                await anyio.sleep(0.05)
        specs = [_spec(i) for i in range(4)]
        for spec in specs:
            await bus.submit(spec.model_dump_json())
        for spec in specs:
            assert spec.job_id is not None
            job = await wait_finished(store, spec.job_id, timeout_s=90)
            assert job.status is JobStatus.FINISHED_SUCCESSFULLY, (job.error, processes.logs())
            assert job.round == 2
        shards = {keys.shard_of(spec.job_id or "") for spec in specs}
        assert len(shards) > 1  # the jobs' events went to more than one node
        with anyio.fail_after(10):
            while await daemon_pending(cluster_redis, [*keys.all_event_streams(),
                                                       keys.submissions, keys.control]):
                await anyio.sleep(0.1)
        assert await dead_letters(cluster_redis, keys) == []
        # The operator's commands on the same cluster URL: the live workers (from the
        # registry, no SCAN) and a job's status.
        listed = run_cli("workers", "--json", env=processes.env)
        assert listed.returncode == 0, listed.stderr
        assert {w["name"] for w in json.loads(listed.stdout)["workers"]} == {SERVER, *CLIENTS}
        status = run_cli("status", "cluster-job-0", env=processes.env)
        assert status.returncode == 0, status.stderr
        assert "FINISHED_SUCCESSFULLY" in status.stdout
        processes.check_running()
    finally:
        await store.close()
    processes.stop()
    for name, proc in processes.procs.items():
        assert proc.returncode == 0, f"{name}:\n{processes.log(name)}"
        assert "Traceback" not in processes.log(name), processes.log(name)
