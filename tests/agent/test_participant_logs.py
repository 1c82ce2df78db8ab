"""Participant logs: a child's stdout, stderr and logging, bounded, tailed live to the job's
log stream and stored whole in the object store; ``orchestrator logs`` shows them.

The CLI tests run the whole path: a real in-process daemon on the Mongo stand-in, a real
worker agent whose participants run in child processes, real S3 (rclone), and ``orchestrator
logs`` as a separate process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from helpers import run_cli, subprocess_env, unique

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import JobSpec, JobStatus, Role
from orchestrator.storage import ObjectStore, open_object_store
from orchestrator.store import MongoJobStore, connect_mongo
from tests.agent import isolated_workloads as w
from tests.agent.support import FakeDaemon, RegisterWorkload, running_agent
from tests.daemon.harness import daemon_running, fast_options, wait_finished, wait_for_job

STREAM_NAMES = ("stdout", "stderr")


async def _stream_fields(redis: Redis, keys: Keys, job_id: str) -> list[dict[str, str]]:
    entries: Any = await redis.xrange(keys.logs(job_id), "-", "+")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


async def test_output_is_tailed_to_the_stream_and_stored_whole(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.chatty)
    async with running_agent(redis, keys, memory_store) as agent:
        start = await daemon.start(agent.config.name, workload=name, config={"lines": 3})
        end = await daemon.wait_terminal(start, timeout_s=30)
    assert end.type == "participant.finished"
    stored = (await memory_store.get_data(f"jobs/{start.job_id}/logs/server.log")).decode()
    lines = stored.splitlines()
    streams = {line.split(" ", 2)[1] for line in lines}
    assert streams == {"stdout", "stderr"}, lines
    text = [line.split(" ", 2)[2] for line in lines]
    assert "hello from print in server" in text
    assert "a line on stderr" in text
    assert "WARNING chatty: a line from logging" in text
    assert any("a line from ctx.log" in t and "participant_seen=server" in t for t in text)
    assert [t for t in text if t.startswith("line ")] == ["line 0", "line 1", "line 2"]

    fields = await _stream_fields(redis, keys, start.job_id)
    assert [f["l"] for f in fields if "l" in f] == text  # the live tail has every line
    assert {f["r"] for f in fields} == {start.run_id}
    assert fields[-1] == {"p": "server", "r": start.run_id, "end": "finished",
                          "key": f"jobs/{start.job_id}/logs/server.log"}
    assert await redis.ttl(keys.logs(start.job_id)) > 0  # the stream expires


async def test_past_the_bound_lines_are_dropped_with_a_note(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    name = register_workload(w.chatty)
    async with running_agent(redis, keys, memory_store, log_max_lines=50) as agent:
        start = await daemon.start(agent.config.name, workload=name, config={"lines": 200})
        end = await daemon.wait_terminal(start, timeout_s=30)
    assert end.type == "participant.finished"
    lines = (await memory_store.get_data(f"jobs/{start.job_id}/logs/server.log")
             ).decode().splitlines()
    assert len(lines) == 51
    # 4 greeting lines + 200 numbered + "chatty done" = 205, of which 50 kept
    assert lines[-1].split(" ", 2)[1:] == [
        "note", "[log truncated: the bound of 50 lines / 5 MB per participant was reached; "
        "155 more line(s) dropped]"]
    fields = await _stream_fields(redis, keys, start.job_id)
    notes = [f["l"] for f in fields if f.get("s") == "note"]
    assert notes == ["[log truncated: the bound of 50 lines / 5 MB per participant was "
                     "reached]"]
    assert len([f for f in fields if f.get("s") in STREAM_NAMES]) == 50


# --- orchestrator logs -----------------------------------------------------------------------


@dataclass
class World:
    env: dict[str, str]
    keys: Keys
    jobs: MongoJobStore
    objects: ObjectStore
    redis: Redis
    workload: str


@pytest.fixture
async def world(stack_env: dict[str, str], redis: Redis, keys: Keys,
                register_workload: RegisterWorkload) -> AsyncIterator[World]:
    db = unique("logsdb").replace("-", "_")
    env = subprocess_env(stack_env, ORCHESTRATOR_NAMESPACE=keys.namespace,
                         ORCHESTRATOR_MONGO_DB=db, ORCHESTRATOR_EVENT_SHARDS="2")
    jobs = connect_mongo(env["ORCHESTRATOR_MONGO_URL"], db)
    await jobs.ensure_indexes()
    objects = open_object_store(env["ORCHESTRATOR_S3_URL"],
                                endpoint_url=env["ORCHESTRATOR_S3_ENDPOINT_URL"],
                                access_key_id=env["AWS_ACCESS_KEY_ID"],
                                secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    async with objects:
        yield World(env, keys, jobs, objects, redis, register_workload(w.chatty))
    await jobs.close()


def _spec(world: World, job_id: str, client_config: dict[str, Any],
          server_config: dict[str, Any] | None = None) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": job_id, "workload": world.workload,
        "server": {"worker": f"{job_id}-srv", "config": server_config or {}},
        "clients": [{"worker": f"{job_id}-cli", "config": client_config}],
        "timeouts": {"heartbeat_s": 5, "start_s": 30, "round_s": 60, "job_s": 120},
    })


async def test_logs_prints_what_the_participant_printed_and_logged(world: World) -> None:
    job_id = unique("logs")
    async with daemon_running(world.jobs, world.redis, fast_options(world.keys.namespace)), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-srv"), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-cli",
                          role=Role.CLIENT):
        await Bus(world.redis, world.keys).submit(_spec(world, job_id, {"lines": 2})
                                                  .model_dump_json())
        job = await wait_finished(world.jobs, job_id, timeout_s=60)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error

    # the four ``orchestrator logs`` processes run side by side (each is a separate process)
    runs: dict[str, tuple[str, ...]] = {
        "one": ("--participant", "client-0"), "both": (), "as_json": ("-p", "server", "--json"),
        "unknown": ("-p", "client-9")}
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    async def run(name: str, args: tuple[str, ...]) -> None:
        done[name] = await anyio.to_thread.run_sync(
            lambda: run_cli("logs", job_id, *args, env=world.env))

    async with anyio.create_task_group() as tg:
        for name, args in runs.items():
            tg.start_soon(run, name, args)
    one, both, as_json, unknown = (done[name] for name in runs)
    assert one.returncode == 0, one.stderr
    lines = one.stdout.splitlines()
    assert lines[0] == "hello from print in client-0"
    for expected in ("a line on stderr", "WARNING chatty: a line from logging", "line 0",
                     "line 1", "chatty done"):
        assert expected in lines, lines
    assert any("a line from ctx.log" in line for line in lines)

    assert both.returncode == 0, both.stderr
    assert "[server] hello from print in server" in both.stdout.splitlines()
    assert "[client-0] hello from print in client-0" in both.stdout.splitlines()

    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {r["participant"] for r in rows} == {"server"}
    assert {"stream": "stderr", "line": "a line on stderr"}.items() <= next(
        r for r in rows if r["line"] == "a line on stderr").items()

    assert unknown.returncode == 2 and "client-9" in unknown.stderr


async def test_logs_follow_streams_lines_while_the_participant_runs(world: World) -> None:
    job_id = unique("follow")
    ticks = 30
    async with daemon_running(world.jobs, world.redis, fast_options(world.keys.namespace)), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-srv"), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-cli",
                          role=Role.CLIENT):
        await Bus(world.redis, world.keys).submit(
            _spec(world, job_id, {"ticks": ticks, "tick_s": 0.15},  # the server outlasts it
                  {"ticks": ticks + 12, "tick_s": 0.15}).model_dump_json())
        await wait_for_job(world.jobs, job_id, lambda j: j.status is JobStatus.IN_PROGRESS,
                           timeout_s=30)
        argv = [sys.executable, "-m", "orchestrator.cli.main", "logs", job_id, "--follow"]
        whole = await anyio.open_process([*argv, "--json"], env=world.env,
                                         stderr=subprocess.PIPE)  # every participant
        async with await anyio.open_process([*argv, "--participant", "client-0"],
                                            env=world.env, stderr=subprocess.PIPE) as follower:
            assert follower.stdout is not None
            received = b""
            with anyio.fail_after(60):
                while b"tick 1\n" not in received:
                    received += await follower.stdout.receive()
            # a line arrived while the participant was still running: it was streamed
            running = await world.jobs.get(job_id)
            assert not running.participants["client-0"].state.is_terminal
            with anyio.fail_after(60):
                async for chunk in follower.stdout:
                    received += chunk
                code = await follower.wait()
        job = await wait_finished(world.jobs, job_id, timeout_s=60)
        async with whole:  # it ends once the job has ended
            assert whole.stdout is not None
            everything = b""
            with anyio.fail_after(60):
                async for chunk in whole.stdout:
                    everything += chunk
                whole_code = await whole.wait()
    assert code == 0
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    lines = received.decode().splitlines()
    assert [line for line in lines if line.startswith("tick ")] == [
        f"tick {i}" for i in range(ticks)]
    assert lines[-1] == "chatty done"
    assert whole_code == 0
    rows = [json.loads(line) for line in everything.decode().splitlines()]
    for pid, count in (("server", ticks + 12), ("client-0", ticks)):
        mine = [r["line"] for r in rows if r["participant"] == pid]
        assert [t for t in mine if t.startswith("tick ")] == [f"tick {i}" for i in range(count)]
        assert mine[-1] == "chatty done"


async def test_the_job_view_shows_the_last_lines_of_a_failed_participant(
    world: World, register_workload: RegisterWorkload,
) -> None:
    job_id = unique("failed")
    spec = _spec(world, job_id, {}).model_copy(update={"workload": register_workload(
        w.loud_failure)})
    async with daemon_running(world.jobs, world.redis, fast_options(world.keys.namespace)), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-srv"), \
            running_agent(world.redis, world.keys, world.objects, name=f"{job_id}-cli",
                          role=Role.CLIENT):
        await Bus(world.redis, world.keys).submit(spec.model_dump_json())
        job = await wait_finished(world.jobs, job_id, timeout_s=60)
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    view = await anyio.to_thread.run_sync(
        lambda: run_cli("watch", job_id, "--once", env={**world.env, "COLUMNS": "200"}))
    assert view.returncode == 0, view.stderr
    lines = [line.strip() for line in view.stdout.splitlines()]
    start = lines.index("last lines of client-0:")
    # the last six lines it printed (its stdout and stderr are read side by side)
    assert set(lines[start + 1: start + 7]) == {
        *(f"client-0 step {i}" for i in range(5, 10)), "about to fail: bad data in the shard"}
    assert "last lines of server:" not in lines  # (it was stopped, not failed)
