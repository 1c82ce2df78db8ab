"""A primary SIGKILLed and restarted: the bus rides it out on a cluster as on one node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from redis.asyncio.cluster import RedisCluster

from orchestrator.bus import Bus, Entry, Keys, StreamConsumer, connect_redis
from orchestrator.bus.cluster import node_of
from orchestrator.core import Heartbeat
from orchestrator.devstack.cluster import ClusterProcess, start_cluster
from orchestrator.errors import BusUnavailableError

KEYS = Keys("faults", event_shards=3)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[ClusterProcess]:
    cluster = start_cluster(tmp_path / "cluster", appendonly=True)
    yield cluster
    cluster.stop()


def _events(start: int, n: int) -> list[Heartbeat]:
    return [Heartbeat(event_id=f"e{i}", job_id=f"job-{i}", participant="server", worker="w",
                      seq=1) for i in range(start, start + n)]


@pytest.mark.fault("a Redis Cluster primary SIGKILLed and restarted", invariants=(5, 7))
async def test_a_killed_primary_loses_nothing_once_it_is_back(own_cluster: ClusterProcess
                                                              ) -> None:
    redis = connect_redis(own_cluster.url)
    assert isinstance(redis, RedisCluster)
    bus = Bus(redis, KEYS)
    consumer = StreamConsumer(redis, KEYS.all_event_streams(), "daemon", "d1", block_ms=100)
    read: list[Entry] = []

    async def read_until(count: int) -> None:
        """Until ``count`` distinct events were read (a publish that failed on one node may
        have added its events on the others: sent again, they are there twice)."""
        with anyio.fail_after(30):
            while len({e.fields["event"] for e in read}) < count:
                entries = await consumer.read()  # never raises for a lost node: retries
                read.extend(entries)
                await consumer.ack(entries)

    try:
        await consumer.ensure_groups()
        await bus.publish_events(_events(0, 30))
        await read_until(30)
        victim = node_of(redis, ("XADD", KEYS.events(0)))
        index = next(i for i, n in enumerate(own_cluster.nodes) if n.port == victim.port)
        own_cluster.nodes[index].kill()
        with pytest.raises(BusUnavailableError):
            await bus.publish_events(_events(30, 30))
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_until, 60)  # waits through the outage
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(own_cluster.restart, index)
            with anyio.fail_after(30):
                while True:
                    try:
                        await bus.publish_events(_events(30, 30))
                        break
                    except BusUnavailableError:
                        await anyio.sleep(0.2)
        read.extend(await consumer.read())  # whatever else there is (duplicates)
        ids = [(e.stream, e.id) for e in read]
        assert len(ids) == len(set(ids))  # no entry returned twice
        assert {e.fields["event"] for e in read} == {ev.model_dump_json() for ev in _events(0, 60)}
        await consumer.ack(read)
        assert await consumer.pending_count() == 0  # nothing delivered and never returned
    finally:
        await redis.aclose()
