"""What only a cluster has: commands grouped by node in waves, reads cut off across nodes,
the worker registry without SCAN. (The contract tests of ``tests/bus`` run on the cluster too.)"""

from __future__ import annotations

import random

import anyio
from redis.asyncio.cluster import RedisCluster

from orchestrator.bus import Bus, Keys, Redis, StreamConsumer, execute_batch
from orchestrator.bus.cluster import is_cluster_url, node_of, node_url, waves
from orchestrator.devstack.cluster import ClusterProcess
from tests.helpers import unique


def _keys(shards: int = 3) -> Keys:
    return Keys(unique("cl"), event_shards=shards)


def test_the_cluster_url_names_a_node() -> None:
    assert is_cluster_url("redis+cluster://h:1/0") and is_cluster_url("rediss+cluster://h:1")
    assert not is_cluster_url("redis://h:1/0")
    assert node_url("rediss+cluster://u:p@h:1") == "rediss://u:p@h:1"
    assert node_url("redis://h:1/0") == "redis://h:1/0"


def test_acknowledgements_go_in_a_wave_after_the_writes_before_them() -> None:
    batch = [("XADD", "a"), ("XADD", "b"), ("XACK", "s"), ("XACK", "t"), ("XADD", "c"),
             ("XACK", "u")]
    assert waves(batch) == [[0, 1], [2, 3, 4], [5]]
    assert waves([("XACK", "s"), ("XADD", "a")]) == [[0, 1]]  # acks first: nothing to wait for
    assert waves([]) == []


async def test_event_shards_spread_over_the_three_nodes(cluster_redis: Redis,
                                                        redis_cluster: ClusterProcess) -> None:
    keys = _keys(6)
    assert isinstance(cluster_redis, RedisCluster)
    await cluster_redis.initialize()
    nodes = {node_of(cluster_redis, ("XADD", s)).port for s in keys.all_event_streams()}
    assert nodes == {node.port for node in redis_cluster.nodes}


async def test_a_batch_over_every_node_answers_in_order(cluster_redis: Redis) -> None:
    keys = _keys()
    batch = [("INCRBY", f"{keys.namespace}:{{k{i % 7}}}", i) for i in range(60)]
    replies = await execute_batch(cluster_redis, batch)
    totals: dict[int, int] = {}
    expected = []
    for i in range(60):
        totals[i % 7] = totals.get(i % 7, 0) + i
        expected.append(totals[i % 7])
    assert replies == expected


async def test_reads_cut_off_on_other_nodes_lose_and_repeat_nothing(cluster_redis: Redis
                                                                    ) -> None:
    """Entries arrive on three shards (three nodes) at random moments while a consumer blocks
    on all of them: each blocking read that returns cancels the others, yet every entry is
    returned exactly once and nothing is left pending unreturned."""
    keys = _keys()
    streams = keys.all_event_streams()
    consumer = StreamConsumer(cluster_redis, streams, "g", "c1", batch=5, block_ms=200)
    await consumer.ensure_groups()
    added: set[tuple[str, str]] = set()
    returned: list[tuple[str, str]] = []
    rng = random.Random(7)

    async def produce() -> None:
        for i in range(150):
            stream = rng.choice(streams)
            entry_id = await cluster_redis.xadd(stream, {"n": str(i)})
            added.add((stream, entry_id.decode()))
            await anyio.sleep(rng.choice([0, 0, 0.001, 0.005, 0.02]))

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        with anyio.fail_after(60):
            while len(returned) < 150:
                entries = await consumer.read()
                returned += [(e.stream, e.id) for e in entries]
                await consumer.ack(entries)
    assert len(returned) == len(set(returned)) == 150
    assert set(returned) == added
    assert await consumer.pending_count() == 0


async def test_a_read_cancelled_from_outside_is_recovered(cluster_redis: Redis) -> None:
    keys = _keys(2)
    consumer = StreamConsumer(cluster_redis, keys.all_event_streams(), "g", "c1",
                              block_ms=5_000)
    await consumer.ensure_groups()
    with anyio.move_on_after(0.2):
        await consumer.read()  # blocks on both shards, then is cancelled
    entry_id = (await cluster_redis.xadd(keys.events(1), {"n": "1"})).decode()
    with anyio.fail_after(10):
        [entry] = await consumer.read()
    assert entry.id == entry_id
    assert not consumer.draining


async def test_liveness_of_all_workers_comes_from_the_registry(cluster_redis: Redis) -> None:
    keys = _keys()
    bus = Bus(cluster_redis, keys)
    names = [f"w{i}" for i in range(8)]  # their keys spread over the nodes
    for name in names:
        await bus.register_worker(name, "client", ttl_s=30, info={"capacity": 1})
    alive = await bus.alive_workers()
    assert set(alive) == set(names)
    assert alive["w3"]["role"] == "client" and alive["w3"]["capacity"] == 1
    assert set(await cluster_redis.zrange(keys.workers, 0, -1)) == {n.encode() for n in names}
    await bus.unregister_worker("w0")
    await cluster_redis.delete(keys.worker_alive("w1"))  # expired, still in the registry
    assert set(await bus.alive_workers()) == set(names) - {"w0", "w1"}
    assert set(await bus.alive_workers(["w1", "w2", "nobody"])) == {"w2"}
    # A key set without registering is not found: nothing scans for it.
    await cluster_redis.set(keys.worker_alive("ghost"), "{}")
    assert "ghost" not in await bus.alive_workers()
    # Names whose registration expired long ago are dropped at the next registration.
    await cluster_redis.zadd(keys.workers, {"ancient": 1})
    await bus.register_worker("w2", "client", ttl_s=30)
    assert await cluster_redis.zscore(keys.workers, "ancient") is None
