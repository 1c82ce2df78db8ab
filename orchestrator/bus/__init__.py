"""The Redis Streams event bus.

``wire`` (entries, the client, error translation), ``consumer`` (``StreamConsumer``: reading a
consumer group reliably), ``reading`` (its XREADGROUP and group commands), ``reclaim`` (its
taking over and dead-lettering of pending entries), ``producer`` (``Bus``: what producers
write), ``packing`` (``execute_batch``: many commands in one round trip), ``resp`` (packing
them), ``cluster`` (the same on Redis Cluster: one pipeline per node, reads per stream),
``keys`` (every key name), ``retry`` (``Backoff``).

The names below are loaded on first use, so that importing a light submodule
(``orchestrator.bus.keys`` or ``.retry``, as storage and the CLI do) loads neither redis-py
nor a module that makes a logger at import.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.bus.consumer import StreamConsumer
    from orchestrator.bus.housekeeping import trim_floor
    from orchestrator.bus.keys import Keys
    from orchestrator.bus.packing import execute_batch
    from orchestrator.bus.producer import Bus, update_payload
    from orchestrator.bus.retry import Backoff
    from orchestrator.bus.wire import (
        TRANSIENT_REDIS_ERRORS,
        Batch,
        Entry,
        Redis,
        connect_redis,
        submission_job_id,
        translated,
    )

_MODULE_OF = {
    "TRANSIENT_REDIS_ERRORS": "wire",
    "Backoff": "retry",
    "Batch": "wire",
    "Bus": "producer",
    "Entry": "wire",
    "Keys": "keys",
    "Redis": "wire",
    "StreamConsumer": "consumer",
    "connect_redis": "wire",
    "execute_batch": "packing",
    "submission_job_id": "wire",
    "translated": "wire",
    "trim_floor": "housekeeping",
    "update_payload": "producer",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)


__all__ = [
    "TRANSIENT_REDIS_ERRORS",
    "Backoff",
    "Batch",
    "Bus",
    "Entry",
    "Keys",
    "Redis",
    "StreamConsumer",
    "connect_redis",
    "execute_batch",
    "submission_job_id",
    "translated",
    "trim_floor",
    "update_payload",
]
