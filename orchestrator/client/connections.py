"""The client's connections, opened when first needed and each checked with a ping.

A client that only reads jobs never connects to Redis, and one that only submits never
connects to MongoDB: each server is reached, under a short timeout, the first time a method
needs it. Unreachable servers raise ``StoreUnavailableError`` / ``BusUnavailableError`` with
the driver's one-line gist. The clients themselves are built by the same builders the daemon
and the workers use (:mod:`orchestrator.connect`), so TLS files, passwords and the Redis
client kind come from the same settings everywhere.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

from orchestrator.errors import BusUnavailableError, StoreUnavailableError, error_gist

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrator.bus import Bus
    from orchestrator.bus.keys import Keys
    from orchestrator.settings import Settings
    from orchestrator.storage import ObjectStore
    from orchestrator.store.mongo import MongoJobStore

CONNECT_TIMEOUT_S = 3.0
"""How long the first use of a server waits for it before it is called unreachable."""

CLOSE_TIMEOUT_S = 2.0
"""Closing never holds up the caller (or a Ctrl-C) longer than this."""


class Connections:
    """The store, Redis and the object store of one client, each opened on first use."""

    def __init__(self, settings: Settings, *, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        from orchestrator.connect import keys_for  # noqa: PLC0415 - keep imports light

        self.settings = settings
        self.timeout_s = timeout_s
        self.keys: Keys = keys_for(settings)
        self._store: MongoJobStore | None = None
        self._redis: Redis | None = None
        self._bus: Bus | None = None
        self._objects: ObjectStore | None = None
        self._lock = anyio.Lock()

    async def store(self) -> MongoJobStore:
        """The job store, pinged on first use."""
        if self._store is not None:
            return self._store
        from orchestrator.connect import mongo_for  # noqa: PLC0415

        async with self._lock:
            if self._store is None:
                store = mongo_for(self.settings, timeout_s=self.timeout_s)
                try:
                    with anyio.fail_after(self.timeout_s + 1):
                        await store.db.command("ping")
                except Exception as exc:
                    await _quietly_close(store.close)
                    raise StoreUnavailableError(error_gist(exc)) from exc
                self._store = store
        return self._store

    async def redis(self) -> Redis:
        """The bus's Redis client, pinged on first use."""
        if self._redis is not None:
            return self._redis
        from orchestrator.connect import plain_redis, redis_for  # noqa: PLC0415

        async with self._lock:
            if self._redis is None:
                # First a PING on a plain connection without retries (the bus client retries
                # a refused connection with backoff, which would only say "timed out").
                check = plain_redis(self.settings, timeout_s=self.timeout_s)
                try:
                    with anyio.fail_after(self.timeout_s + 1):
                        await check.ping()
                except Exception as exc:
                    raise BusUnavailableError(error_gist(exc)) from exc
                finally:
                    await _quietly_close(check.aclose)
                self._redis = redis_for(self.settings)
        return self._redis

    async def bus(self) -> Bus:
        """The producer side of the bus (submissions, cancels, worker registrations)."""
        if self._bus is None:
            from orchestrator.connect import bus_for  # noqa: PLC0415

            self._bus = bus_for(await self.redis(), self.settings)
        return self._bus

    async def objects(self) -> ObjectStore:
        """The checkpoint store the settings name (opened on first use)."""
        if self._objects is None:
            from orchestrator.connect import object_store_for  # noqa: PLC0415

            objects = object_store_for(self.settings)
            await objects.__aenter__()
            self._objects = objects
        return self._objects

    async def aclose(self) -> None:
        """Close what was opened; a dead connection never holds this up."""
        store, redis, objects = self._store, self._redis, self._objects
        self._store = self._redis = self._bus = self._objects = None
        if store is not None:
            await _quietly_close(store.close)
        if redis is not None:
            await _quietly_close(redis.aclose)
        if objects is not None:
            async def close_objects() -> None:
                await objects.__aexit__(None, None, None)

            await _quietly_close(close_objects)


async def _quietly_close(close: object) -> None:
    with anyio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
        with contextlib.suppress(Exception):  # closing a dead connection may fail
            await close()  # type: ignore[operator]
