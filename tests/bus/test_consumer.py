"""``StreamConsumer`` against a real Redis (Valkey) server: pending first, reclaim,
dead-letter, NOGROUP recovery, trimming, and riding out a Redis restart."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import anyio
import pytest
import redis.asyncio as aioredis

from orchestrator.bus import Entry, Keys, Redis, StreamConsumer, connect_redis, trim_floor
from orchestrator.bus.wire import text
from orchestrator.devstack.servers import ServerProcess, start_redis
from tests.bus.support import GROUP, add, consumer, dead, pending_ids, rows


async def test_new_consumer_with_same_name_drains_its_pending_first(redis: Redis,
                                                                     keys: Keys) -> None:
    first = consumer(redis, keys)
    await first.ensure_groups()
    await first.ensure_groups()  # BUSYGROUP is fine
    ids = await add(redis, keys.events(0), 5)
    got = await first.read()
    assert [e.id for e in got] == ids  # read, then "dies" without acking
    await add(redis, keys.events(0), 3, start=5)

    reborn = consumer(redis, keys)
    again = await reborn.read()
    assert [e.id for e in again] == ids, "own pending entries come back first"
    assert all(e.deliveries >= 2 for e in again)
    assert again[0].fields == {"n": "0"}
    await reborn.ack(again)
    fresh = await reborn.read()
    assert [e.fields["n"] for e in fresh] == ["5", "6", "7"]
    await reborn.ack(fresh)
    assert await reborn.pending_count() == 0
    assert await reborn.read() == []


async def test_another_consumer_reclaims_idle_entries(redis: Redis, keys: Keys) -> None:
    dying = consumer(redis, keys, "dying")
    await dying.ensure_groups()
    ids = await add(redis, keys.events(1), 4)
    assert len(await dying.read()) == 4
    rescuer = consumer(redis, keys, "rescuer", reclaim_idle_ms=100)
    assert await rescuer.reclaim() == [], "not idle long enough yet"
    await anyio.sleep(0.15)
    claimed = await rescuer.reclaim()
    assert [e.id for e in claimed] == ids
    assert {e.deliveries for e in claimed} == {2}
    assert claimed[0].fields == {"n": "0"}
    assert claimed[0].stream == keys.events(1)
    await rescuer.ack(claimed)
    assert await pending_ids(redis, keys.events(1)) == []


async def test_entry_delivered_too_often_is_dead_lettered_with_reason(redis: Redis,
                                                                       keys: Keys) -> None:
    c = consumer(redis, keys, max_deliveries=2, reclaim_idle_ms=30)
    await c.ensure_groups()
    [poison] = await add(redis, keys.events(0), 1)
    assert len(await c.read()) == 1  # delivery 1
    await anyio.sleep(0.05)
    assert [e.deliveries for e in await c.reclaim()] == [2]  # delivery 2: still handed out
    await anyio.sleep(0.05)
    assert await c.reclaim() == []  # delivery 3 > max: dead-lettered, acknowledged
    [row] = await dead(redis, keys)
    assert row["stream"] == keys.events(0)
    assert row["id"] == poison
    assert json.loads(row["fields"]) == {"n": "0"}
    assert row["deliveries"] == "3"
    assert "delivered 3 times (max 2)" in row["reason"]
    assert await pending_ids(redis, keys.events(0)) == []
    assert c.dead_lettered == 1


async def test_explicit_dead_letter_is_atomic_with_the_ack(redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys)
    await c.ensure_groups()
    await add(redis, keys.events(1), 2)
    first, second = await c.read()
    await c.dead_letter(first, "not an event")
    assert await pending_ids(redis, keys.events(1)) == [second.id]
    [row] = await dead(redis, keys)
    assert (row["id"], row["reason"], row["group"], row["consumer"]) == (
        first.id, "not an event", GROUP, "c1")


async def test_deleted_group_is_recreated_and_nothing_in_the_stream_is_lost(
        redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys)
    await c.ensure_groups()
    ids = await add(redis, keys.events(0), 3)
    first = await c.read()
    await c.ack(first[:1])  # one acknowledged, two pending
    await redis.xgroup_destroy(keys.events(0), GROUP)
    later = await add(redis, keys.events(0), 2, start=3)
    seen: list[str] = []
    with anyio.fail_after(5):
        while len(seen) < 5:
            batch = await c.read()
            seen += [e.id for e in batch]
            await c.ack(batch)
    assert c.groups_recreated == 1
    assert seen == ids + later, "recreated from 0: everything still in the stream is read"
    assert await c.pending_count() == 0


async def test_pending_entry_deleted_from_stream_is_dead_lettered_on_reclaim(
        redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys, reclaim_idle_ms=20)
    await c.ensure_groups()
    gone, kept = await add(redis, keys.events(0), 2)
    await c.read()
    await redis.xdel(keys.events(0), gone)
    await anyio.sleep(0.05)
    claimed = await c.reclaim()
    assert [e.id for e in claimed] == [kept]
    [row] = await dead(redis, keys)
    assert row["id"] == gone
    assert "deleted or trimmed" in row["reason"]
    assert await pending_ids(redis, keys.events(0)) == [kept]


async def test_own_pending_entry_deleted_comes_back_with_empty_fields(redis: Redis,
                                                                      keys: Keys) -> None:
    c = consumer(redis, keys)
    await c.ensure_groups()
    gone, _ = await add(redis, keys.events(1), 2)
    await c.read()
    await redis.xdel(keys.events(1), gone)
    again = consumer(redis, keys)
    entries = await again.read()
    assert next((e.id, e.fields == {}) for e in entries) == (gone, True)


async def test_trimming_never_passes_the_oldest_pending_entry(redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys, batch=50)
    await c.ensure_groups()
    ids = await add(redis, keys.events(0), 300)
    batch = await c.read()
    assert len(batch) == 50
    await c.ack(batch[:40])  # entries 40..49 stay pending, 50..299 never delivered
    removed = await c.trim(maxlen=10)
    remaining = [i.decode() for i, _ in await rows(redis, keys.events(0))]
    assert ids[40] in remaining, "the oldest pending entry survives"
    assert remaining == ids[len(ids) - len(remaining):], "only a prefix was trimmed"
    assert set(ids[40:]) <= set(remaining)
    assert removed == 300 - len(remaining)
    assert await trim_floor(redis, keys.events(0)) == ids[40]
    # Once everything delivered is acknowledged, the floor is the first undelivered entry.
    await c.ack(batch[40:])
    assert await trim_floor(redis, keys.events(0)) == f"{ids[49].split('-')[0]}-" \
        f"{int(ids[49].split('-')[1]) + 1}"
    await c.trim(maxlen=10)
    remaining = [i.decode() for i, _ in await rows(redis, keys.events(0))]
    assert set(ids[50:]) <= set(remaining), "undelivered entries are never trimmed"


@pytest.mark.fault("Redis SIGKILLed with AOF: nothing lost", invariants=(5, 7))
async def test_no_loss_across_a_redis_kill_with_aof(tmp_path: Path, namespace: str) -> None:
    keys = Keys(namespace, event_shards=2)
    server = start_redis(tmp_path / "aof", appendonly=True)
    redis = connect_redis(server.url)
    try:
        c = consumer(redis, keys)
        await c.ensure_groups()
        ids = await add(redis, keys.events(0), 20)
        in_flight = await c.read()
        await c.ack(in_flight[:5])  # 5 done, 15 pending when Redis dies
        more = await add(redis, keys.events(0), 5, start=20)
        await anyio.sleep(1.3)  # appendfsync everysec
        os.kill(server.pid, signal.SIGKILL)
        server.kill()

        got: list[Entry] = []

        async def reader() -> None:  # rides out the outage: read() never raises for it
            reborn = consumer(redis, keys)
            with anyio.fail_after(20):
                while len(got) < 20:
                    batch = await reborn.read()
                    got.extend(batch)
                    await reborn.ack(batch)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.5)
            server = start_redis(tmp_path / "aof", port=server.port, appendonly=True)
        assert [e.id for e in got] == ids[5:] + more
        assert await redis.xlen(keys.events(0)) == 25
        assert await pending_ids(redis, keys.events(0)) == []
    finally:
        await redis.aclose()
        server.stop()


async def test_read_needs_a_stream() -> None:
    with pytest.raises(ValueError, match="at least one stream"):
        StreamConsumer(None, [], GROUP, "c")  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", [2, 3])
async def test_reads_the_raw_reply_of_either_protocol(redis_server: ServerProcess, keys: Keys,
                                                      protocol: int) -> None:
    """``StreamConsumer`` walks XREADGROUP's raw reply itself: RESP2 lists and RESP3 maps,
    several streams, unicode fields, and a deleted entry's nil fields."""
    client = aioredis.Redis.from_url(redis_server.url, protocol=protocol)
    try:
        c = consumer(client, keys)
        await c.ensure_groups()
        a = text(await client.xadd(keys.events(0), {"event": "é1", "x": "y"}))
        b = text(await client.xadd(keys.events(1), {"event": "2"}))
        gone = text(await client.xadd(keys.events(1), {"event": "3"}))
        first = await c.read()
        assert [(e.stream, e.id, e.fields, e.deliveries) for e in first] == [
            (keys.events(0), a, {"event": "é1", "x": "y"}, 1),
            (keys.events(1), b, {"event": "2"}, 1),
            (keys.events(1), gone, {"event": "3"}, 1),
        ]
        await client.xdel(keys.events(1), gone)
        again = await consumer(client, keys).read()  # same name: drains its own pending first
        assert [(e.id, e.fields, e.deliveries) for e in again] == [
            (a, {"event": "é1", "x": "y"}, 2), (b, {"event": "2"}, 2), (gone, {}, 2)]
    finally:
        await client.aclose()


async def test_a_group_lost_during_reclaim_is_recreated(redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys, reclaim_idle_ms=0)
    await c.ensure_groups()
    ids = await add(redis, keys.events(1), 2)
    await redis.xgroup_destroy(keys.events(1), GROUP)
    assert await c.reclaim() == []
    assert c.groups_recreated == 1
    assert [e.id for e in await c.read()] == ids


async def test_draining_until_own_pending_entries_are_read_and_rewind_starts_over(
        redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys)
    await c.ensure_groups()
    assert c.draining
    [entry_id] = await add(redis, keys.events(0), 1)
    assert [e.id for e in await c.read()] == [entry_id]  # history empty, then the new entry
    assert not c.draining
    c.rewind()
    assert c.draining
    again = await c.read()
    assert [(e.id, e.deliveries) for e in again] == [(entry_id, 2)]
    assert await c.read() == [] and not c.draining


async def test_dead_letter_without_a_dead_letter_stream_only_acknowledges(
        redis: Redis, keys: Keys) -> None:
    c = consumer(redis, keys, dead_letter=None)
    await c.ensure_groups()
    await add(redis, keys.events(0), 1)
    [entry] = await c.read()
    await c.dead_letter(entry, "unwanted")
    assert await pending_ids(redis, keys.events(0)) == []
    assert await redis.exists(keys.dead_letter) == 0
    assert c.dead_lettered == 1


async def test_the_trim_floor_is_the_oldest_need_over_every_group(redis: Redis,
                                                                  keys: Keys) -> None:
    fast = consumer(redis, keys, "fast")
    await fast.ensure_groups()
    behind = StreamConsumer(redis, [keys.events(0)], "behind", "b", batch=5, block_ms=10)
    await behind.ensure_groups()
    ids = await add(redis, keys.events(0), 20)
    await fast.ack(await fast.read())
    assert len(await behind.read()) == 5
    assert await trim_floor(redis, keys.events(0)) == ids[0], "the lagging group's pending"
    assert await trim_floor(redis, keys.dead_letter) is None, "no such stream"
    assert await fast.pending_count() == 0
    assert await behind.pending_count() == 5


async def test_pending_count_of_streams_without_the_group_is_zero(redis: Redis,
                                                                  keys: Keys) -> None:
    assert await consumer(redis, keys).pending_count() == 0
