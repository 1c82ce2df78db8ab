"""Connections of the commands: Redis and MongoDB, each checked with a ping under a short
timeout (an unreachable server is one line naming its setting), and closed without holding up
the exit.

This is the one place where the commands (daemon, worker, CLI, watcher, demo) build their
clients from the settings — :func:`redis_for`, :func:`mongo_for`, :func:`object_store_for` and
the checked :func:`open_redis`, :func:`open_store` — so each gets the same TLS files
(:mod:`orchestrator.tls`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import anyio

from orchestrator.cli.common import Failure
from orchestrator.errors import error_gist
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus import Bus
    from orchestrator.bus.keys import Keys
    from orchestrator.storage import ObjectStore
    from orchestrator.store.mongo import MongoJobStore

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
"""How long a command waits for Redis or MongoDB before saying it is unreachable."""

CLOSE_TIMEOUT_S = 2.0
"""Closing a connection never holds up the exit (or a Ctrl-C) longer than this."""


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


def mongo_unreachable(settings: Settings, exc: BaseException) -> Failure:
    return Failure(
        f"cannot reach MongoDB at {redact(settings.mongo_url)} (ORCHESTRATOR_MONGO_URL): "
        f"{error_gist(exc)}"
    )


def redis_unreachable(settings: Settings, exc: BaseException) -> Failure:
    return Failure(
        f"cannot reach Redis at {redact(settings.redis_url)} (ORCHESTRATOR_REDIS_URL): "
        f"{error_gist(exc)}"
    )


@asynccontextmanager
async def _checked(
    client: T,
    *,
    ping: Callable[[], Awaitable[object]],
    close: Callable[[], Awaitable[object]],
    unreachable: Callable[[BaseException], Failure],
    timeout_s: float,
) -> AsyncIterator[T]:
    """``client`` once ``ping()`` answered within ``timeout_s`` (else ``unreachable(exc)``);
    closed afterwards, without letting a dead connection hold up the exit."""
    try:
        try:
            with anyio.fail_after(timeout_s + 1):
                await ping()
        except Exception as exc:
            raise unreachable(exc) from exc
        yield client
    finally:
        with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
            with contextlib.suppress(Exception):  # closing a dead connection may fail
                await close()


def open_store(
    settings: Settings, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> AbstractAsyncContextManager[MongoJobStore]:
    """The job store, checked with a ``ping`` first so that an unreachable server fails fast."""
    store = mongo_for(settings, timeout_s=timeout_s)
    return _checked(
        store,
        ping=lambda: store.db.command("ping"),
        close=store.close,
        unreachable=lambda exc: mongo_unreachable(settings, exc),
        timeout_s=timeout_s,
    )


def open_redis(
    settings: Settings, *, timeout_s: float = CONNECT_TIMEOUT_S
) -> AbstractAsyncContextManager[Redis]:
    """A Redis client, checked with a ``PING`` first (short connect timeout)."""
    from redis.asyncio import Redis as NodeClient  # noqa: PLC0415
    from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415

    from orchestrator.bus.cluster import is_cluster_url, node_url  # noqa: PLC0415
    from orchestrator.tls import redis_tls_options  # noqa: PLC0415

    url = node_url(settings.redis_url)  # a redis+cluster:// URL: any node of the cluster
    client = cast("Redis", (RedisCluster if is_cluster_url(settings.redis_url)
                            else NodeClient).from_url(
        url,
        password=settings.redis_password_plain,
        socket_connect_timeout=timeout_s,
        decode_responses=False,
        **redis_tls_options(url, settings.redis_tls),
    ))
    return _checked(
        client,
        ping=client.ping,
        close=client.aclose,
        unreachable=lambda exc: redis_unreachable(settings, exc),
        timeout_s=timeout_s,
    )
