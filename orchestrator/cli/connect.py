"""Connections of the commands: Redis and MongoDB, each checked with a ping under a short
timeout (an unreachable server is one line naming its setting), and closed without holding up
the exit.

The clients themselves are built in one place, :mod:`orchestrator.connect` (re-exported here
for the commands): the checked :func:`open_redis` and :func:`open_store` add the ping and
the one-line failure."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import anyio

from orchestrator.cli.common import Failure
from orchestrator.connect import (
    bus_for,
    keys_for,
    mongo_for,
    object_store_for,
    plain_redis,
    redact,
    redis_for,
)
from orchestrator.errors import error_gist
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.store.mongo import MongoJobStore

T = TypeVar("T")

CONNECT_TIMEOUT_S = 3.0
"""How long a command waits for Redis or MongoDB before saying it is unreachable."""

CLOSE_TIMEOUT_S = 2.0
"""Closing a connection never holds up the exit (or a Ctrl-C) longer than this."""


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
    client = plain_redis(settings, timeout_s=timeout_s)
    return _checked(
        client,
        ping=client.ping,
        close=client.aclose,
        unreachable=lambda exc: redis_unreachable(settings, exc),
        timeout_s=timeout_s,
    )


__all__ = ["CLOSE_TIMEOUT_S", "CONNECT_TIMEOUT_S", "bus_for", "keys_for", "mongo_for",
           "mongo_unreachable", "object_store_for", "open_redis", "open_store", "redact",
           "redis_for", "redis_unreachable"]
