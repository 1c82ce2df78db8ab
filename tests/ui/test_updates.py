"""``Client.updates_position``, ``Client.updates`` and ``Client.recent_updates`` on a real
Redis: positions, batches after a position (filtered by job), empty batches on a timed-out
block, and the trimmed position that tells a view to reload."""

from __future__ import annotations

import json

import pytest

from orchestrator.bus import Redis
from orchestrator.client import Client
from orchestrator.client.updates import UpdatesTrimmedError
from orchestrator.devstack.servers import ServerProcess
from orchestrator.errors import BusUnavailableError


def note(job_id: str, version: int) -> dict[str, str]:
    return {"update": json.dumps({"job_id": job_id, "status": "IN_PROGRESS",
                                  "phase": "running", "round": 1, "version": version,
                                  "reason": "r", "at": "2026-12-02T01:00:00+00:00"})}


async def test_positions_batches_and_trimming(redis_server: ServerProcess, redis: Redis,
                                              namespace: str) -> None:
    stream = f"{namespace}:updates"
    async with Client(redis_url=redis_server.url, namespace=namespace) as client:
        assert await client.updates_position() == "0-0"
        first = (await redis.xadd(stream, note("a", 1))).decode()
        assert await client.updates_position() == first
        await redis.xadd(stream, note("b", 1))
        third = (await redis.xadd(stream, note("a", 2))).decode()
        updates = client.updates(after="0-0", block_ms=100)
        batch = await anext(updates)
        assert [(n["job_id"], n["version"]) for n in batch] == [("a", 1), ("b", 1), ("a", 2)]
        assert batch[-1]["entry_id"] == third and batch[0]["at"].tzinfo is not None
        assert await anext(updates) == []  # the block timed out
        await updates.aclose()
        only_a = client.updates(after=first, job_id="a", block_ms=100)
        assert [n["version"] for n in await anext(only_a)] == [2]
        await only_a.aclose()
        recent = await client.recent_updates("a", count=5)
        assert [n["version"] for n in recent] == [1, 2]
        await redis.xtrim(stream, maxlen=1, approximate=False)
        with pytest.raises(UpdatesTrimmedError):
            await anext(client.updates(after=first))
        with pytest.raises(UpdatesTrimmedError):  # from the start, but entries are gone
            await anext(client.updates(after="0-0"))
        tail = client.updates(after=third, block_ms=100)
        assert await anext(tail) == []  # the last entry itself is still there: no reset
        await tail.aclose()


async def test_an_unreachable_redis_is_bus_unavailable(namespace: str) -> None:
    from orchestrator.devstack.servers import free_port  # noqa: PLC0415

    async with Client(redis_url=f"redis://127.0.0.1:{free_port()}/0", namespace=namespace,
                      connect_timeout_s=1) as client:
        with pytest.raises(BusUnavailableError):
            await client.updates_position()
