"""The bus contract tests run twice: on one Valkey node and on a three-primary cluster.

``redis`` is parametrised; a test that also asks for ``redis_server`` is about that one server
(its connections are killed, its protocol chosen) and runs on the single node only. With two
event shards (the ``keys`` fixture) the two shards live on different nodes of the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.bus import Redis, connect_redis
from orchestrator.devstack.cluster import ClusterProcess
from orchestrator.devstack.servers import ServerProcess


@pytest.fixture(params=["node", "cluster"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """A bus client on the session's single server, or on the session's cluster
    (``redis_cluster``, tests/conftest.py)."""
    if request.param == "cluster":
        if "redis_server" in request.fixturenames:
            pytest.skip("a test of the single server itself")
        cluster: ClusterProcess = request.getfixturevalue("redis_cluster")
        url = cluster.url
    else:
        server: ServerProcess = request.getfixturevalue("redis_server")
        url = server.url
    client = connect_redis(url)
    yield client
    await client.aclose()
