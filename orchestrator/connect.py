"""Clients built from the settings: the one place where the daemon, the workers, the CLI, the
watcher, the demo and the Python client get their Redis, MongoDB and object-store clients
(:func:`redis_for`, :func:`mongo_for`, :func:`object_store_for`, :func:`plain_redis` for a
check), so each gets the same password, TLS files (:mod:`orchestrator.tls`) and key names.
The commands' checked openers, whose failures are one line naming the setting, are in
:mod:`orchestrator.cli.connect`."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit, urlunsplit

from orchestrator.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus import Bus
    from orchestrator.bus.keys import Keys
    from orchestrator.storage import ObjectStore
    from orchestrator.store.mongo import MongoJobStore


def redact(url: str) -> str:
    """A URL without its password, fit to print: the one after ``user:`` and any query
    parameter named like one (``password=``, MongoDB's ``tlsCertificateKeyFilePassword=``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    query = "&".join(
        f"{name}=***" if "password" in name.lower() and sep else f"{name}{sep}{value}"
        for name, sep, value in (item.partition("=") for item in parts.query.split("&")))
    changed, parts = query != parts.query, parts._replace(query=query)
    if parts.password is None:
        return urlunsplit(parts) if changed else url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def keys_for(settings: Settings) -> Keys:
    from orchestrator.bus.keys import Keys  # noqa: PLC0415

    return Keys(namespace=settings.namespace, event_shards=settings.event_shards)


def bus_for(redis: Redis, settings: Settings) -> Bus:
    """The producer side of the bus (submissions, cancels) on ``redis``, as ``settings`` say."""
    from orchestrator.bus import Bus  # noqa: PLC0415

    return Bus(redis, keys_for(settings), maxlen=settings.stream_maxlen)


def redis_for(settings: Settings) -> Redis:
    """The bus's Redis client (``connect_redis``) with the settings' password and TLS files."""
    from orchestrator.bus.wire import connect_redis  # noqa: PLC0415 - keep --help fast

    # On a redis+cluster:// URL this is a RedisCluster: it offers the commands the callers
    # send, and the bus routes its batches and reads by node (orchestrator.bus.cluster).
    return cast("Redis", connect_redis(settings.redis_url, password=settings.redis_password_plain,
                                       tls=settings.redis_tls))


def mongo_for(settings: Settings, *, timeout_s: float = 5.0) -> MongoJobStore:
    """The MongoDB job store with the settings' TLS files (not checked: see open_store)."""
    from orchestrator.store.mongo import connect_mongo  # noqa: PLC0415

    return connect_mongo(settings.mongo_url, settings.mongo_db,
                         timeout_ms=int(timeout_s * 1000), tls=settings.mongo_tls)


def object_store_for(settings: Settings) -> ObjectStore:
    """The checkpoint store ``ORCHESTRATOR_S3_URL`` names; an ``s3://`` one with the endpoint
    and the TLS files (CA bundle, client certificate) of the settings."""
    from orchestrator.storage import open_object_store  # noqa: PLC0415

    if settings.s3_url.startswith("s3://") and settings.s3_tls:
        return open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url,
                                 tls=settings.s3_tls)
    return open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url)



def plain_redis(settings: Settings, *, timeout_s: float) -> Redis:
    """A Redis client for a first check (a ``PING``): no retries, a short connect timeout (the
    bus's client retries a refused connection with backoff, which would only say "timed
    out"). On a ``redis+cluster://`` URL, a cluster client from any node."""
    from redis.asyncio import Redis as NodeClient  # noqa: PLC0415
    from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415

    from orchestrator.bus.cluster import is_cluster_url, node_url  # noqa: PLC0415
    from orchestrator.tls import redis_tls_options  # noqa: PLC0415

    url = node_url(settings.redis_url)  # a redis+cluster:// URL: any node of the cluster
    return cast("Redis", (RedisCluster if is_cluster_url(settings.redis_url)
                          else NodeClient).from_url(
        url,
        password=settings.redis_password_plain,
        socket_connect_timeout=timeout_s,
        decode_responses=False,
        **redis_tls_options(url, settings.redis_tls),
    ))


__all__ = ["bus_for", "keys_for", "mongo_for", "object_store_for", "plain_redis", "redact",
           "redis_for"]
