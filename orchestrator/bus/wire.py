"""What travels on the bus, and the Redis client it travels through.

The ``Entry`` a consumer reads, the decoding of XREADGROUP replies into entries, the job id
of a submission, the client ``connect_redis`` builds, and the translation of redis-py errors
into ours (``translated``).

Wire formats (all values UTF-8 JSON strings):

* submissions  ``spec`` = JobSpec JSON, optional ``idempotency_key`` (overrides the spec's);
* events       ``event`` = one event (``orchestrator.core.EVENT_ADAPTER``);
* commands     ``command`` = one command (``orchestrator.core.COMMAND_ADAPTER``);
* control      ``type`` = ``cancel`` with ``job_id``, ``reason``, ``requested_by``;
  ``type`` = ``worker_registered`` with ``worker`` and ``role`` (wakes admission);
* dead letter  ``stream``, ``id``, ``fields`` (JSON object), ``reason``, ``deliveries``,
  ``group``, ``consumer``, ``at``;
* updates      ``update`` = one job update (see ``Bus.publish_update``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.bus.cluster import is_cluster_url, node_url
from orchestrator.errors import BusError, BusUnavailableError
from orchestrator.tls import NO_TLS_FILES, TLSFiles, redis_tls_options

#: The bus's client: one node, or a Redis Cluster (``redis+cluster://``).
Redis = aioredis.Redis | RedisCluster
#: Commands for one ``execute_batch`` round trip (the daemon's commit: commands, updates, XACK).
Batch = list[tuple[Any, ...]]

#: Errors that mean "Redis is not reachable right now": retried, never fatal.
TRANSIENT_REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    TimeoutError,
    OSError,
)

SUBMISSION_NAMESPACE = uuid.UUID("6f1d3c9e-3b1a-4c55-9d8e-6a7b0c2d4e5f")


def connect_redis(url: str, *, password: str | None = None,
                  tls: TLSFiles = NO_TLS_FILES) -> Redis:
    """A client for the bus: bytes replies, no per-reply socket timeout, health checks, and
    commands retried with jittered backoff when their connection breaks. A ``rediss://`` URL
    is TLS, verified with ``tls`` (``Settings.redis_tls``; see :mod:`orchestrator.tls`).

    ``socket_timeout=None`` because redis-py 8 wraps every reply read in ``asyncio.timeout()``
    when a timeout is set, which makes pipelines markedly slower (performance.md); blocking
    reads are bounded by BLOCK instead, and dead connections are found by the health check.

    A ``redis+cluster://host:port`` URL (``rediss+cluster://`` with TLS) gives a
    ``RedisCluster`` client that finds the other nodes from that one; the bus then routes by
    slot (``orchestrator.bus.cluster``). The same options apply to each node's connections.
    """
    retry = Retry(EqualJitterBackoff(cap=2.0, base=0.05), retries=6)
    plain = node_url(url)
    options: dict[str, Any] = {
        "password": password,
        "decode_responses": False,
        "socket_timeout": None,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 10,
        "retry": retry,
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, BusyLoadingError],
        **redis_tls_options(plain, tls),
    }
    if is_cluster_url(url):
        return RedisCluster.from_url(plain, **options)
    client: aioredis.Redis = aioredis.Redis.from_url(plain, **options)
    return client


@asynccontextmanager
async def translated(what: str) -> AsyncIterator[None]:
    """Turn redis-py exceptions into ``BusUnavailableError`` (transient) / ``BusError``."""
    try:
        yield
    except TRANSIENT_REDIS_ERRORS as exc:
        raise BusUnavailableError(f"Redis unreachable during {what}: {exc}") from exc
    except ResponseError as exc:
        raise BusError(f"Redis refused {what}: {exc}") from exc


def text(value: bytes | str) -> str:
    """A reply value as ``str`` (UTF-8; undecodable bytes replaced)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def now_iso() -> str:
    """The current UTC time in ISO 8601, as written in ``at`` fields."""
    return datetime.now(UTC).isoformat()


def submission_job_id(entry_id: str, namespace: str = "orchestrator") -> str:
    """The job id given to a submission whose spec names none: derived from its entry id.

    Deterministic, so a submission redelivered after a daemon crash creates no second job;
    a submitter that knows the entry id (``Bus.submit`` returns it) knows the job id.
    """
    return uuid.uuid5(SUBMISSION_NAMESPACE, f"{namespace}/{entry_id}").hex


class Entry(NamedTuple):
    """One stream entry as read by a consumer group. ``fields`` is empty if it was deleted."""

    stream: str
    id: str
    fields: dict[str, str]
    deliveries: int = 1


def decode_fields(flat: Any) -> dict[str, str]:
    """An entry's ``[k, v, k, v, ...]`` as a dict (``{}`` for a deleted entry's nil)."""
    if not flat:
        return {}
    it = iter(flat)
    return {text(key): text(value) for key, value in zip(it, it, strict=True)}


def entries_of_reply(reply: Any, deliveries: int = 1) -> list[Entry]:
    """The entries of an XREADGROUP reply as the server sent it, in either protocol:
    RESP3 ``{stream: [[id, [k, v, ...]], ...]}`` or RESP2 ``[[stream, [[id, [k, v, ...]]]]]``.
    """
    if not reply:
        return []
    pairs = reply.items() if isinstance(reply, dict) else reply
    return [
        Entry(text(stream), text(entry_id), decode_fields(flat), deliveries)
        for stream, messages in pairs
        for entry_id, flat in messages
    ]


def dead_letter_fields(entry: Entry, reason: str, group: str, consumer: str) -> dict[str, str]:
    """The fields of an entry's copy on the dead-letter stream (the reason cut at 4 KiB)."""
    return {
        "stream": entry.stream,
        "id": entry.id,
        "fields": json.dumps(entry.fields, separators=(",", ":")),
        "reason": reason[:4096],
        "deliveries": str(entry.deliveries),
        "group": group,
        "consumer": consumer,
        "at": now_iso(),
    }


__all__ = [
    "TRANSIENT_REDIS_ERRORS",
    "Batch",
    "Entry",
    "Redis",
    "connect_redis",
    "dead_letter_fields",
    "decode_fields",
    "entries_of_reply",
    "now_iso",
    "submission_job_id",
    "text",
    "translated",
]
