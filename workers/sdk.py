"""The workload SDK: everything a workload sees of the orchestrator.

A workload is ``async def my_workload(ctx: WorkloadContext) -> WorkloadResult | None``,
registered by name (:mod:`workers.registry`). A job spec only ever names it.

``WorkloadContext`` is a Protocol with two implementations: the real one on top of Redis Streams
and S3 (used by worker processes) and the in-memory one in :mod:`workers.local` (tests, trying a
workload on a laptop). Model bytes travel through the object store (``put_blob``/``get_blob``);
only their keys travel as peer messages, which must be small JSON objects.

Import from here. The code lives in :mod:`workers.workload_api` (what a workload sees),
:mod:`workers.validation` (checks every context applies) and :mod:`workers.context_base`
(the base of every context implementation).
"""

from workers.context_base import ContextBase, Identity, blob_sha256
from workers.validation import (
    MAX_METRICS,
    check_recipient,
    check_round,
    config_float,
    config_int,
    encode_message_body,
    validate_metrics,
)
from workers.workload_api import (
    MAX_MESSAGE_BYTES,
    ORCHESTRATOR,
    SERVER_ID,
    PeerMessage,
    PeerMessageError,
    Workload,
    WorkloadCancelled,
    WorkloadContext,
    WorkloadFn,
    WorkloadResult,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_METRICS",
    "ORCHESTRATOR",
    "SERVER_ID",
    "ContextBase",
    "Identity",
    "PeerMessage",
    "PeerMessageError",
    "Workload",
    "WorkloadCancelled",
    "WorkloadContext",
    "WorkloadFn",
    "WorkloadResult",
    "blob_sha256",
    "check_recipient",
    "check_round",
    "config_float",
    "config_int",
    "encode_message_body",
    "validate_metrics",
]
