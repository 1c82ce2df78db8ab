"""The watcher when a server goes away mid-run: a clear message on stderr and retries, never a
traceback; and it follows again once Redis is back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import unique

from orchestrator.bus import Bus, connect_redis
from orchestrator.devstack.servers import ServerProcess, start_mongo, start_redis
from orchestrator.store import connect_mongo
from tests.cli.conftest import CliWorld
from tests.cli.fill import JobBuilder


def _watch(env: dict[str, str], job_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli.main", "watch", job_id, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_stderr(proc: subprocess.Popen[str], needle: str) -> str:
    assert proc.stderr is not None
    seen = ""
    for line in proc.stderr:
        seen += line
        if needle in line:
            return seen
    pytest.fail(f"{needle!r} never appeared on stderr:\n{seen}")


async def advance_and_announce(env: dict[str, str], world: CliWorld,
                               builder: JobBuilder) -> None:
    store = connect_mongo(env["ORCHESTRATOR_MONGO_URL"], world.db)
    builder.store = store
    redis = connect_redis(env["ORCHESTRATOR_REDIS_URL"])
    try:
        job = await builder.round(2)
        await Bus(redis, world.keys).publish_update(job, "round 2 done")
    finally:
        await store.close()
        await redis.aclose()


@pytest.mark.parametrize("victim", ["redis", "mongo"])
async def test_watch_survives_a_server_going_away(cli_world: CliWorld, tmp_path: Path,
                                                  victim: str) -> None:
    server: ServerProcess = (start_redis(tmp_path / "redis") if victim == "redis"
                             else start_mongo(tmp_path / "mongo"))
    key = "ORCHESTRATOR_REDIS_URL" if victim == "redis" else "ORCHESTRATOR_MONGO_URL"
    env = cli_world.env | {key: server.url}
    if victim == "mongo":  # a stopped server is called unreachable after 1.5 s, not 3 s
        env["ORCHESTRATOR_CONNECT_TIMEOUT_S"] = "1.5"
    mongo_url = env["ORCHESTRATOR_MONGO_URL"]
    store = connect_mongo(mongo_url, cli_world.db)
    try:
        builder = JobBuilder(store, unique("degraded"), rounds=5)
        await builder.create()
        await builder.start()
        await builder.round(1)
    finally:
        await store.close()
    proc = _watch(env, builder.job_id)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert (first["status"], first["round"]) == ("IN_PROGRESS", 1)
        server.stop()
        name = "Redis" if victim == "redis" else "MongoDB"
        message = _wait_for_stderr(proc, f"{name} unreachable")
        assert "retrying" in message
        assert proc.poll() is None, "the watcher keeps going"
        if victim == "redis":  # back on the same port (empty): the watcher follows again
            server = start_redis(tmp_path / "redis2", port=server.port)
            await advance_and_announce(env, cli_world, builder)
            line = json.loads(proc.stdout.readline())  # from the note, or from Mongo if the
            assert line["round"] == 2                   # note came before the reconnection
            assert line["reason"] in ("round 2 done", None)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    assert proc.returncode == 1  # interrupted before the job finished
    assert "Traceback" not in message + err
