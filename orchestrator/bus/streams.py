"""Temporary: the names ``orchestrator.bus.streams`` had before it was split, re-exported.

Import from ``orchestrator.bus`` (or ``.wire``, ``.consumer``, ``.producer``, ``.packing``)
instead; this module goes away once nothing imports it.
"""

from orchestrator.bus.consumer import StreamConsumer
from orchestrator.bus.housekeeping import trim_floor
from orchestrator.bus.packing import execute_batch
from orchestrator.bus.producer import Bus, update_payload
from orchestrator.bus.wire import (
    TRANSIENT_REDIS_ERRORS,
    Batch,
    Entry,
    Redis,
    connect_redis,
    submission_job_id,
    translated,
)

__all__ = [
    "TRANSIENT_REDIS_ERRORS",
    "Batch",
    "Bus",
    "Entry",
    "Redis",
    "StreamConsumer",
    "connect_redis",
    "execute_batch",
    "submission_job_id",
    "translated",
    "trim_floor",
    "update_payload",
]
