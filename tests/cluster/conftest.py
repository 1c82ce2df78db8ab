"""Fixtures of the Redis Cluster tests: a client on the session's local cluster
(``redis_cluster`` itself is in tests/conftest.py, shared with tests/bus)."""

from __future__ import annotations

from tests.cluster.fixtures import cluster_redis

__all__ = ["cluster_redis"]
