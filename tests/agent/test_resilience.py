"""Redis connection loss: the outbox keeps every event and sends it once Redis is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from orchestrator.bus import Redis, connect_redis
from orchestrator.bus.keys import Keys
from orchestrator.devstack.servers import ServerProcess, start_redis
from orchestrator.storage import ObjectStore
from tests.agent.support import FakeDaemon, running_agent


def first_occurrences(events: list[object]) -> list[object]:
    seen: set[str] = set()
    unique_events = []
    for event in events:
        if event.event_id not in seen:  # type: ignore[attr-defined]
            seen.add(event.event_id)  # type: ignore[attr-defined]
            unique_events.append(event)
    return unique_events


def assert_complete(daemon: FakeDaemon, job_id: str, rounds: int) -> None:
    events = first_occurrences(daemon.of(job_id))
    types = [e.type for e in events]  # type: ignore[attr-defined]
    assert types[0] == "participant.started", types
    assert types[-1] == "participant.finished", types
    assert [e.round for e in events if e.type == "round.metrics"] == list(  # type: ignore[attr-defined]
        range(1, rounds + 1)
    )
    assert [e.round for e in events if e.type == "round.started"] == list(  # type: ignore[attr-defined]
        range(1, rounds + 1)
    )
    seqs = [e.seq for e in events]  # type: ignore[attr-defined]
    assert seqs == sorted(seqs)


@pytest.mark.fault("Redis connections dropped mid-job", invariants=(3,))
async def test_dropped_connections_lose_no_event(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    redis_server: ServerProcess,
) -> None:
    rounds = 12
    killer = connect_redis(redis_server.url)
    try:
        async with running_agent(redis, keys, memory_store) as agent:
            start = await daemon.start(
                agent.config.name, workload="sleep", rounds=rounds,
                config={"seconds": 3.0}, heartbeat_interval_s=0.1,
            )
            kills = 0
            with anyio.move_on_after(20):
                while not daemon.of(start.job_id, types=["participant.finished"]):
                    await killer.client_kill_filter(_type="normal", skipme=True)
                    kills += 1
                    await anyio.sleep(0.15)
                    await daemon.poll()
            await daemon.wait_terminal(start)
    finally:
        await killer.aclose()
    assert kills >= 10
    assert_complete(daemon, start.job_id, rounds)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_redis(tmp_path / "redis", appendonly=True)
    yield server
    server.stop()


@pytest.mark.fault("Redis killed and restarted mid-job", invariants=(3, 7))
async def test_redis_restart_mid_job_loses_no_event(
    own_redis: ServerProcess, keys: Keys, memory_store: ObjectStore, tmp_path: Path
) -> None:
    rounds = 8
    agent_redis = connect_redis(own_redis.url)
    daemon_redis = connect_redis(own_redis.url)
    daemon = FakeDaemon(daemon_redis, keys)
    server = own_redis
    try:
        async with running_agent(agent_redis, keys, memory_store) as agent:
            start = await daemon.start(
                agent.config.name, workload="sleep", rounds=rounds,
                config={"seconds": 4.0}, heartbeat_interval_s=0.2,
            )
            await daemon.wait_type(start, "round.metrics", count=2)
            await anyio.to_thread.run_sync(server.stop)  # SIGTERM: the AOF is flushed
            await anyio.sleep(2.0)  # the workload goes on; its events wait in the outbox
            assert agent.outbox.pending > 0
            server = await anyio.to_thread.run_sync(
                lambda: start_redis(tmp_path / "redis", port=own_redis.port, appendonly=True)
            )
            await daemon.wait_terminal(start, timeout_s=30)
            # the worker takes commands again after the restart
            again = await daemon.start(agent.config.name)
            assert (await daemon.wait_terminal(again)).type == "participant.finished"
    finally:
        await agent_redis.aclose()
        await daemon_redis.aclose()
        server.stop()
    assert_complete(daemon, start.job_id, rounds)
