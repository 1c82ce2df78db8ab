"""A real ``orchestrator daemon`` process, killed with SIGKILL while events flow.

After the restarts every invariant of design.md must hold: every job FINISHED, no duplicated
transition, nothing left pending for the daemon group, dead letters only for the bad inputs
injected here. Then SIGTERM drains and exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import Heartbeat, JobStatus
from orchestrator.devstack.servers import ServerProcess
from orchestrator.store import connect_mongo
from tests.daemon.harness import (
    TEST_DAEMON_KEY,
    assert_history_sane,
    daemon_pending,
    dead_letters,
    job_spec,
    running,
    wait_finished,
    workers_for,
)
from tests.helpers import run_cli, subprocess_env, unique

pytestmark = pytest.mark.slow
JOBS = 16


class DaemonProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, consumer: str) -> None:
        self.env, self.log_dir, self.consumer = env, log_dir, consumer
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"daemon-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli.main", "daemon",
                 "--consumer", self.consumer, "--batch-size", "25"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT)

    async def wait_ready(self, timeout_s: float = 20) -> None:
        with anyio.fail_after(timeout_s):
            while b"daemon ready" not in self.log_path.read_bytes():
                assert self.proc is not None
                assert self.proc.poll() is None, self.log_path.read_text()
                await anyio.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def daemon_proc(tmp_path: Path, redis_server: ServerProcess, mongo_server: ServerProcess,
                namespace: str) -> Iterator[DaemonProcess]:
    env = subprocess_env({
        "ORCHESTRATOR_REDIS_URL": redis_server.url,
        "ORCHESTRATOR_MONGO_URL": mongo_server.url,
        "ORCHESTRATOR_MONGO_DB": f"db-{namespace}",
        "ORCHESTRATOR_NAMESPACE": namespace,
        "ORCHESTRATOR_EVENT_SHARDS": "2",
        "ORCHESTRATOR_BLOCK_MS": "100",
        "ORCHESTRATOR_REAPER_INTERVAL_S": "0.2",
        "ORCHESTRATOR_RECLAIM_IDLE_MS": "1000",
        "ORCHESTRATOR_LOG_FORMAT": "json",
        "ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode(),
    })
    proc = DaemonProcess(env, tmp_path, consumer=unique("proc"))
    yield proc
    proc.stop()


@pytest.mark.fault("daemon SIGKILLed twice mid-batch, then SIGTERM", invariants=(1, 2, 3, 5, 7, 8))
async def test_sigkill_mid_batch_loses_and_duplicates_nothing(
        daemon_proc: DaemonProcess, redis: Redis, keys: Keys, mongo_server: ServerProcess,
        namespace: str) -> None:
    store = connect_mongo(mongo_server.url, f"db-{namespace}")
    keys = Keys(namespace, event_shards=2)
    bus = Bus(redis, keys)
    workers = workers_for(redis, keys, clients=2, step_s=0.03)
    try:
        # Bad inputs first: exactly these may end up dead-lettered.
        await redis.xadd(keys.submissions, {b"spec": b"not json"})
        await bus.submit('{"job_id": "x", "workload": "noop"}')  # (no server: invalid_spec)
        await redis.xadd(keys.events(1), {b"event": b"[]"})
        for i in range(JOBS):
            await bus.submit(job_spec(f"k{i}", clients=2, rounds=8).model_dump_json())
        async with running(*(w.run for w in workers)):
            daemon_proc.start()
            await daemon_proc.wait_ready()
            for _ in range(2):  # kill it twice while events flow
                with anyio.fail_after(20):
                    while sum(len(w.sent) for w in workers) < 150 * daemon_proc.runs:
                        await anyio.sleep(0.01)
                daemon_proc.kill()
                await anyio.sleep(0.2)
                daemon_proc.start()
                await daemon_proc.wait_ready()
            jobs = [await wait_finished(store, f"k{i}", timeout_s=40) for i in range(JOBS)]
            await anyio.sleep(0.5)  # late heartbeats and acks settle
            # Graceful stop: SIGTERM drains and exits 0.
            assert daemon_proc.proc is not None
            t0 = time.monotonic()
            daemon_proc.proc.send_signal(signal.SIGTERM)
            code = daemon_proc.proc.wait(15)
        assert code == 0, daemon_proc.log_path.read_text()[-3000:]
        assert time.monotonic() - t0 < 10
        bad = [(j.id, j.status, j.error) for j in jobs
               if j.status is not JobStatus.FINISHED_SUCCESSFULLY]
        assert not bad, bad
        for job in jobs:
            assert_history_sane(job)
            assert len(await store.metrics(job.id)) == 3 * 8
        streams = [*keys.all_event_streams(), keys.submissions, keys.control]
        assert await daemon_pending(redis, streams) == 0, "nothing left unacknowledged"
        letters = await dead_letters(redis, keys)
        assert sorted(d["reason"].split(":")[0] for d in letters) == [
            "invalid_event", "invalid_spec", "not_json"]
        assert len(await store.rejections()) == 3
        log = daemon_proc.log_path.read_text()
        assert '"daemon stopped"' in log
        first_run = (daemon_proc.log_dir / "daemon-1.log").read_text()
        assert '"daemon stopped"' not in first_run, "the first daemon was killed, not stopped"
    finally:
        await store.close()


def test_invalid_settings_exit_2_with_the_reason() -> None:
    result = run_cli("daemon", env=subprocess_env({}, ORCHESTRATOR_REDIS_URL="http://nope"))
    assert result.returncode == 2
    assert "ORCHESTRATOR_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_a_daemon_key_the_daemon_exits_2_saying_what_to_set(tmp_path: Path) -> None:
    result = run_cli("daemon", env=subprocess_env({}))
    assert result.returncode == 2
    assert "no daemon key: set ORCHESTRATOR_DAEMON_KEY" in result.stderr
    short = subprocess_env({}, ORCHESTRATOR_DAEMON_KEY="too-short")
    result = run_cli("daemon", env=short)
    assert result.returncode == 2
    assert "at least 16" in result.stderr
    assert "too-short" not in result.stderr, "the key is never printed"
    missing = subprocess_env({}, ORCHESTRATOR_DAEMON_KEY_FILE=str(tmp_path / "nope"))
    result = run_cli("daemon", env=missing)
    assert result.returncode == 2
    assert "cannot read ORCHESTRATOR_DAEMON_KEY_FILE" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_servers_exit_1_after_the_startup_timeout() -> None:
    env = subprocess_env({}, ORCHESTRATOR_REDIS_URL="redis://127.0.0.1:9/0",
                         ORCHESTRATOR_MONGO_URL="mongodb://127.0.0.1:9/",
                         ORCHESTRATOR_DAEMON_KEY=TEST_DAEMON_KEY.decode())
    t0 = time.monotonic()
    result = run_cli("daemon", "--startup-timeout", "1", env=env, timeout_s=30)
    assert result.returncode == 1
    assert "not ready after 1s" in result.stderr
    assert "MongoDB" in result.stderr
    assert time.monotonic() - t0 < 15


async def test_a_daemon_on_the_memory_store_runs_jobs_and_reports_its_round_trips(
        tmp_path: Path, redis_server: ServerProcess, redis: Redis, namespace: str) -> None:
    """``ORCHESTRATOR_MONGO_URL=memory://``: one daemon keeps the jobs itself (the benchmark's
    shape). Its watcher updates show the jobs finish; SIGTERM drains, and the last log line
    gives its counters and the store's round trips."""
    import json  # noqa: PLC0415

    env = subprocess_env({"ORCHESTRATOR_REDIS_URL": redis_server.url,
                          "ORCHESTRATOR_MONGO_URL": "memory://",
                          "ORCHESTRATOR_NAMESPACE": namespace, "ORCHESTRATOR_BLOCK_MS": "100",
                          "ORCHESTRATOR_EVENT_SHARDS": "2", "ORCHESTRATOR_LOG_FORMAT": "json",
                          "ORCHESTRATOR_DAEMON_KEY": TEST_DAEMON_KEY.decode()})
    proc = DaemonProcess(env, tmp_path, consumer="memory")
    keys = Keys(namespace, event_shards=2)
    workers = workers_for(redis, keys, clients=0)
    bus = Bus(redis, keys)
    try:
        async with running(*(w.run for w in workers)):
            proc.start()
            await proc.wait_ready()
            for i in range(5):
                await bus.submit(job_spec(f"mem-{i}", clients=0, rounds=1).model_dump_json())
            finished: set[str] = set()
            with anyio.fail_after(20):
                while len(finished) < 5:
                    for _, fields in await redis.xrange(keys.updates):
                        update = json.loads(fields[b"update"])
                        if update["status"] == "FINISHED_SUCCESSFULLY":
                            finished.add(update["job_id"])
                    await anyio.sleep(0.05)
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            assert proc.proc.wait(15) == 0
    finally:
        proc.stop()
    assert finished == {f"mem-{i}" for i in range(5)}
    stopped = [json.loads(line) for line in proc.log_path.read_text().splitlines()
               if '"daemon stopped"' in line]
    assert stopped and stopped[-1]["submissions_accepted"] == 5
    assert stopped[-1]["store_round_trips"] > 0


async def test_no_secret_reaches_the_store_or_the_daemons_log(
        daemon_proc: DaemonProcess, redis: Redis, mongo_server: ServerProcess,
        namespace: str) -> None:
    """The run secrets, mailbox keys and the daemon key are in the start commands only: not in
    any document of any collection, nor in the daemon's (debug) log, forged events and all."""
    store = connect_mongo(mongo_server.url, f"db-{namespace}")
    keys = Keys(namespace, event_shards=2)
    bus = Bus(redis, keys)
    workers = workers_for(redis, keys, clients=2)
    daemon_proc.env["ORCHESTRATOR_LOG_LEVEL"] = "debug"
    try:
        async with running(*(w.run for w in workers)):
            daemon_proc.start()
            await daemon_proc.wait_ready()
            await bus.submit(job_spec("secretive", clients=2).model_dump_json())
            job = await wait_finished(store, "secretive")
            await redis.xadd(keys.events_for("secretive"), {"event": Heartbeat(
                event_id="forged", job_id="secretive", participant="server",
                worker="srv", mac="0" * 64).model_dump_json()})
            with anyio.fail_after(10):
                while not await store.refused_events(job_id="secretive"):
                    await anyio.sleep(0.05)
            assert daemon_proc.proc is not None
            daemon_proc.proc.send_signal(signal.SIGTERM)
            assert daemon_proc.proc.wait(20) == 0
        starts = [s for w in workers for s in w.starts.values()]
        secrets = {TEST_DAEMON_KEY.decode()}
        for start in starts:
            assert start.run_secret and start.mailbox_key
            secrets |= {start.run_secret, start.mailbox_key}
        assert len(secrets) == 1 + 3 + 1  # the key, three run secrets, one mailbox key
        dumped = []
        for name in await store.db.list_collection_names():
            dumped += [repr(doc) async for doc in store.db[name].find({})]
        everything = "\n".join(dumped)
        assert "secretive" in everything and len(dumped) > 3
        log = daemon_proc.log_path.read_text()
        assert "event refused" in log
        for secret in secrets:
            assert secret not in everything, "a secret was stored"
            assert secret not in log, "a secret was logged"
        assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    finally:
        await store.close()
