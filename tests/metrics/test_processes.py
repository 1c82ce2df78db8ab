"""A real daemon and real workers with their endpoints on: the metrics after a fedavg job, and
``/readyz`` while the Valkey they use is stopped (by its PID) and started again.

The daemon's endpoint is turned on with ``--metrics-addr``, the workers' with
``ORCHESTRATOR_METRICS_ADDR``; each on a free port of 127.0.0.1.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.bus import Bus, connect_redis
from orchestrator.bus.keys import Keys
from orchestrator.core import JobStatus
from orchestrator.devstack.servers import ServerProcess, free_port, start_redis
from orchestrator.store import connect_mongo
from tests.daemon.harness import TEST_DAEMON_KEY, wait_finished
from tests.helpers import run_cli, subprocess_env, unique

pytestmark = pytest.mark.slow
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path,
                 port: int) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen([sys.executable, "-m", "orchestrator.cli.main", *argv],
                                          env=env, stdout=log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """A Valkey of this test's own, which it stops and starts again (the last one is live)."""
    servers = [start_redis(tmp_path / "redis")]
    yield servers
    servers[-1].stop()


async def scrape(http: httpx.AsyncClient, proc: Proc) -> Samples:
    reply = await http.get(f"{proc.url}/metrics")
    assert reply.status_code == 200, proc.log()[-3000:]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (KeyError: none)."""
    found = [v for (n, ls), v in samples.items()
             if n == name and set(labels.items()) <= set(ls)]
    if not found:
        raise KeyError(f"{name}{labels} not exported")
    return sum(found)


async def status(http: httpx.AsyncClient, proc: Proc, path: str) -> int:
    try:
        return (await http.get(f"{proc.url}{path}", timeout=5)).status_code
    except httpx.HTTPError:
        return 0


async def wait_listening(http: httpx.AsyncClient, procs: list[Proc]) -> None:
    with anyio.fail_after(30):
        for proc in procs:
            while await status(http, proc, "/healthz") != 200:
                assert proc.popen.poll() is None, proc.log()[-3000:]
                await anyio.sleep(0.1)


async def wait_ready(http: httpx.AsyncClient, procs: list[Proc], code: int, *,
                     timeout_s: float) -> None:
    """Wait until every ``/readyz`` answers ``code``; ``/healthz`` must answer 200 meanwhile."""
    with anyio.fail_after(timeout_s):
        while True:
            for proc in procs:
                assert proc.popen.poll() is None, proc.log()[-3000:]
                assert await status(http, proc, "/healthz") == 200, proc.log()[-3000:]
            if all([await status(http, p, "/readyz") == code for p in procs]):
                return
            await anyio.sleep(0.2)


async def test_metrics_after_a_job_and_readiness_through_a_redis_outage(
        tmp_path: Path, own_redis: list[ServerProcess], mongo_server: ServerProcess) -> None:
    namespace, db = unique("metrics"), unique("metricsdb")
    redis_server = own_redis[0]
    env = subprocess_env({
        "ORCHESTRATOR_REDIS_URL": redis_server.url,
        "ORCHESTRATOR_MONGO_URL": mongo_server.url,
        "ORCHESTRATOR_MONGO_DB": db,
        "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "2",
        "ORCHESTRATOR_BLOCK_MS": "100",
        "ORCHESTRATOR_S3_URL": (tmp_path / "objects").as_uri(),
        "ORCHESTRATOR_WORKER_TTL_S": "3",
        "ORCHESTRATOR_LOG_FORMAT": "json",
    })
    daemon_port = free_port()
    procs = [Proc("daemon", ["daemon", "--metrics-addr", f"127.0.0.1:{daemon_port}"],
                  {**env, "ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode()}, tmp_path,
                  daemon_port)]
    for role, name in (("server", "srv-1"), ("client", "cli-1")):
        port = free_port()
        procs.append(Proc(name, ["worker", "--role", role, "--name", name],
                          {**env, "ORCHESTRATOR_METRICS_ADDR": str(port)}, tmp_path, port))
    daemon, server_worker, client_worker = procs
    redis = connect_redis(redis_server.url)
    store = connect_mongo(mongo_server.url, db)
    try:
        async with httpx.AsyncClient() as http:
            await wait_listening(http, procs)
            await wait_ready(http, procs, 200, timeout_s=30)
            spec = {"job_id": unique("job"), "workload": "fedavg", "rounds": 2,
                    "server": {"worker": "srv-1", "config": {"seed": 3, "features": 4,
                                                             "classes": 2,
                                                             "test_samples": 50}},
                    "clients": [{"worker": "cli-1",
                                 "config": {"seed": 3, "samples": 60, "epochs": 1,
                                            "features": 4, "classes": 2}}]}
            await Bus(redis, Keys(namespace, event_shards=2)).submit(json.dumps(spec))
            job = await wait_finished(store, spec["job_id"], timeout_s=60)
            assert job.status is JobStatus.FINISHED_SUCCESSFULLY, (job.error, daemon.log()[-3000:])

            with anyio.fail_after(30):  # the job counts are sampled every few seconds
                while True:
                    d = await scrape(http, daemon)
                    if value(d, "orchestrator_jobs", status="FINISHED_SUCCESSFULLY") == 1:
                        break
                    await anyio.sleep(0.5)
            assert value(d, "orchestrator_jobs", status="IN_PROGRESS") == 0
            assert value(d, "orchestrator_daemon_transitions_total", cause="succeeded",
                         to="FINISHED_SUCCESSFULLY", **{"from": "IN_PROGRESS"}) == 1
            assert value(d, "orchestrator_daemon_transitions_total", cause="dispatched") == 1
            assert value(d, "orchestrator_daemon_events_applied_total") > 0
            assert value(d, "orchestrator_daemon_submissions_accepted_total") == 1
            assert value(d, "orchestrator_daemon_dispatched_total") == 1
            assert value(d, "orchestrator_daemon_commands_sent_total") >= 2
            assert value(d, "orchestrator_daemon_batch_size_count") > 0
            assert value(d, "orchestrator_daemon_batch_size_sum") > 0
            assert value(d, "orchestrator_daemon_commit_seconds_count") > 0
            assert value(d, "orchestrator_daemon_cas_retries_total") == 0  # one replica
            assert value(d, "orchestrator_stream_lag", group="daemon") == 0  # all delivered
            assert value(d, "orchestrator_stream_pending", group="daemon") >= 0
            assert value(d, "process_resident_memory_bytes") > 0

            s, c = await scrape(http, server_worker), await scrape(http, client_worker)
            assert value(s, "orchestrator_worker_checkpoint_bytes_total") > 0
            assert value(s, "orchestrator_worker_checkpoint_uploads_total",
                         outcome="succeeded") == 2  # one per round
            assert value(s, "orchestrator_worker_checkpoint_uploads_total",
                         outcome="failed") == 0
            assert value(s, "orchestrator_worker_checkpoint_upload_seconds_count") == 2
            for worker in (s, c):
                assert value(worker, "orchestrator_worker_events_published_total") > 0
                assert value(worker, "orchestrator_worker_participants_running") == 0
                assert value(worker, "orchestrator_worker_outbox_depth") == 0

            # Redis goes away: every /readyz says so within seconds, /healthz stays 200.
            redis_server.stop()
            await wait_ready(http, procs, 503, timeout_s=20)
            reason = (await http.get(f"{daemon.url}/readyz")).text
            assert "redis:" in reason, reason
            own_redis.append(start_redis(tmp_path / "redis", port=redis_server.port))
            await wait_ready(http, procs, 200, timeout_s=60)

        for proc in procs:
            proc.popen.send_signal(signal.SIGTERM)
        for proc in procs:
            code = await anyio.to_thread.run_sync(lambda p=proc: p.popen.wait(30))
            assert code == 0, proc.log()[-3000:]
            assert "Traceback" not in proc.log(), proc.log()[-3000:]
    finally:
        for proc in procs:
            proc.stop()
        await redis.aclose()
        await store.close()


@pytest.mark.parametrize("command", [["daemon", "--startup-timeout", "5"],
                                     ["worker", "--role", "client", "--name", "w-1"]])
def test_a_taken_metrics_address_is_one_clear_line(command: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = subprocess_env({"ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:1/0",
                              "ORCHESTRATOR_MONGO_URL": "memory://",
                              "ORCHESTRATOR_S3_URL": "memory://m",
                              "ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode()})
        result = run_cli(*command, "--metrics-addr", str(port), env=env, timeout_s=30)
    assert result.returncode == 1, result.stderr
    assert f"cannot serve /metrics, /healthz and /readyz on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_metrics_address_is_bad_input() -> None:
    env = subprocess_env({"ORCHESTRATOR_METRICS_ADDR": "localhost:http"})
    result = run_cli("worker", "--role", "client", "--name", "w-1", env=env)
    assert result.returncode == 2
    assert "ORCHESTRATOR_METRICS_ADDR" in result.stderr and "expected HOST:PORT" in result.stderr
    result = run_cli("daemon", "--metrics-addr", "99999",
                     env=subprocess_env({"ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode()}))
    assert result.returncode == 2
    assert "--metrics-addr" in result.stderr
