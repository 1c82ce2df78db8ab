"""Fixtures of the Redis Cluster tests: the session's local cluster and a client on it."""

from __future__ import annotations

from tests.cluster.fixtures import cluster_redis, redis_cluster

__all__ = ["cluster_redis", "redis_cluster"]
