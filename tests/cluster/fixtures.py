"""The local three-primary cluster for the tests (``orchestrator.devstack.cluster``).

``redis_cluster`` is imported by tests/conftest.py (one cluster per session, shared by
``tests/bus`` and ``tests/cluster``), ``cluster_redis`` by tests/cluster/conftest.py; the
cluster is stopped by PID at the end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from orchestrator.bus import Redis, connect_redis
from orchestrator.devstack.cluster import ClusterProcess, start_cluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcess]:
    """Three Valkey primaries sharing the 16384 slots; ``.url`` is ``redis+cluster://…``."""
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_redis(redis_cluster: ClusterProcess) -> AsyncIterator[Redis]:
    """A ``RedisCluster`` client (``connect_redis`` of the cluster URL), closed after the test."""
    client = connect_redis(redis_cluster.url)
    yield client
    await client.aclose()
