"""The knobs of one worker agent, and the few constants its modules share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.core.status import Role

SHUTDOWN_REASON = "worker shutting down"
"""The reason of the ``participant.stopped`` a worker publishes for each run it shuts down."""

MAX_MESSAGE_CHARS = 4000
"""The longest error message or stop reason a worker puts in an event."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Knobs of one worker agent (the CLI fills them from ``Settings``)."""

    name: str
    role: Role
    capacity: int = 4
    ttl_s: float = 10.0
    block_ms: int = 1000
    batch: int = 16
    max_deliveries: int = 5
    reclaim_idle_ms: int = 30_000
    stream_maxlen: int = 1_000_000
    stop_grace_s: float = 5.0
    """How long a stopped workload may take to stop on its own before it is cancelled."""
    shutdown_grace_s: float = 3.0
    flush_timeout_s: float = 10.0
    """How long a shutdown waits for unsent events."""
    upload_drain_on_stop_s: float = 5.0
    """How long a stopped participant waits for its checkpoint uploads."""
    upload_concurrency: int = 2
    upload_buffer_bytes: int = 256 * 1024 * 1024
    storage_retry_s: float = 60.0
    """How long an object-store operation (checkpoint upload, ``load_checkpoint``,
    ``put_blob``, ``get_blob``) retries through an outage, counted from its first failure;
    past it the participant fails with ``storage_unavailable``. A spec's ``round_s`` must
    exceed it (plus a round's normal duration) to ride out such an outage."""
    upload_max_attempts: int | None = None
    """An extra cap on attempts per object-store operation; None: the time budget decides."""
    upload_backoff_base_s: float = 0.2
    """First retry delay's ceiling (doubling, full jitter), for every object-store retry."""
    upload_backoff_max_s: float = 4.0
    """The longest delay between two object-store retries."""
    data_root: str | None = None
    """The directory every participant's ``data_path`` is relative to (see
    :func:`workers.data_paths.confine`); None: paths as given, without ``..``."""
    isolation: Literal["process", "inline"] = "process"
    """``process``: each participant runs in a child process of its own (except workloads
    declared ``light``); ``inline``: every participant runs in the worker's event loop."""
    log_max_lines: int = 10_000
    """Lines of a participant's output kept (and stored) per run; the rest are counted."""
    log_max_bytes: int = 5 * 1024 * 1024
    """Bytes of a participant's output kept (and stored) per run."""
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError("capacity must be at least 1")


def short(text: str) -> str:
    """``text`` cut to :data:`MAX_MESSAGE_CHARS` (with an ellipsis when cut)."""
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return text[: MAX_MESSAGE_CHARS - 1] + "…"
