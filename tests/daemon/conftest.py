from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.bus.keys import Keys
from orchestrator.bus.streams import Redis, connect_redis
from orchestrator.devstack.servers import ServerProcess


@pytest.fixture
async def redis(redis_server: ServerProcess) -> AsyncIterator[Redis]:
    client = connect_redis(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace, event_shards=2)
