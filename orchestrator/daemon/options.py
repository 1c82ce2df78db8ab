"""The daemon's knobs, built once from ``Settings`` (or directly by tests and the bench)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.bus.keys import Keys
from orchestrator.core.spec import MAX_SPEC_BYTES

if TYPE_CHECKING:
    from orchestrator.settings import Settings


def default_consumer_name() -> str:
    """``host-pid``: unique per process. Prefer a stable name per replica (``--consumer``)."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """Everything the daemon needs besides its store and its Redis client."""

    namespace: str = "orchestrator"
    event_shards: int = 4
    #: This replica's consumer name (default ``host-pid``; prefer a stable one per replica).
    consumer: str = field(default_factory=default_consumer_name)
    batch_size: int = 200
    block_ms: int = 1000
    max_deliveries: int = 5
    reclaim_idle_ms: int = 30_000
    reaper_interval_s: float = 0.5
    stream_maxlen: int = 1_000_000
    max_submission_bytes: int = MAX_SPEC_BYTES
    #: How often admission re-checks worker liveness while jobs wait (it is also woken at once
    #: when a job is created or a new worker registers).
    admission_poll_s: float = 1.0
    #: Admission's check when nothing waits (catches jobs created by other replicas).
    admission_idle_s: float = 5.0
    admission_batch: int = 500
    #: Period of the reclaim pass; default: half of ``reclaim_idle_ms``, at most 10 s.
    reclaim_interval_s: float | None = None
    trim_interval_s: float = 60.0
    #: The reaper waits (at most this long) until the event loop has caught up with the
    #: backlog, so that heartbeats queued while no daemon ran are not mistaken for silence.
    catch_up_wait_s: float = 30.0
    #: ``orchestrator daemon`` gives up after this long if Redis or Mongo stay unreachable at
    #: startup (0: retry forever).
    startup_timeout_s: float = 60.0
    #: The key every replica shares; run secrets and mailbox keys derive from it
    #: (``orchestrator.core.auth``). ``None``: a random key for this process only, with a
    #: warning (tests, one-process trials): other replicas, and this one after a restart,
    #: then refuse the events of the runs it dispatched. Never shown in a repr.
    daemon_key: bytes | None = field(default=None, repr=False)

    @property
    def keys(self) -> Keys:
        return Keys(self.namespace, self.event_shards)

    @property
    def reclaim_every_s(self) -> float:
        if self.reclaim_interval_s is not None:
            return self.reclaim_interval_s
        return min(10.0, max(0.05, self.reclaim_idle_ms / 2000))

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DaemonOptions:
        values: dict[str, Any] = {
            "namespace": settings.namespace,
            "event_shards": settings.event_shards,
            "batch_size": settings.batch_size,
            "block_ms": settings.block_ms,
            "max_deliveries": settings.max_deliveries,
            "reclaim_idle_ms": settings.reclaim_idle_ms,
            "reaper_interval_s": settings.reaper_interval_s,
            "stream_maxlen": settings.stream_maxlen,
            "max_submission_bytes": settings.max_submission_bytes,
        }
        key = settings.daemon_key_bytes()
        if key is not None:
            values["daemon_key"] = key
        if settings.consumer_name:
            values["consumer"] = settings.consumer_name
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
