"""The workload-facing API: the types and constants a workload sees (re-exported by
:mod:`workers.sdk`, which is where workloads import them from)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from orchestrator.core.status import Role
from orchestrator.errors import OrchestratorError, WorkloadError

SERVER_ID = "server"
"""The participant id of a job's server."""

ORCHESTRATOR = "orchestrator"
"""The sender of the messages the orchestrator itself puts in a participant's inbox."""

MAX_MESSAGE_BYTES = 64 * 1024
"""The largest peer message body, measured as compact JSON."""


class WorkloadCancelled(OrchestratorError):
    """A stop was requested; raised by :meth:`WorkloadContext.checkpoint_cancel`.

    Workloads should let it propagate (after cleaning up): the worker reports the participant
    as stopped, not failed.
    """


class PeerMessageError(WorkloadError):
    """A peer message body is not a small JSON object, or its recipient is unknown."""


@dataclass(frozen=True, slots=True)
class PeerMessage:
    """A message from another participant of the same job."""

    sender: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WorkloadResult:
    """What a workload returns. ``final_checkpoint`` is a key from ``save_checkpoint``."""

    final_checkpoint: str | None = None
    summary: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class WorkloadContext(Protocol):
    """One participant's view of its job. Implementations must be safe to use from one task."""

    @property
    def job_id(self) -> str: ...
    @property
    def participant(self) -> str:
        """``"server"`` or ``"client-<i>"``."""
        ...

    @property
    def role(self) -> Role: ...
    @property
    def run_id(self) -> str:
        """Unique per attempt to run this participant (changes when it is re-dispatched)."""
        ...

    @property
    def config(self) -> Mapping[str, Any]:
        """``server_config`` for the server, the client's own ``config`` for a client."""
        ...

    @property
    def data_path(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def rounds(self) -> int: ...
    @property
    def peers(self) -> Sequence[str]:
        """Every participant id of the job, this one included: ``server``, ``client-0`` …"""
        ...

    @property
    def gone_peers(self) -> frozenset[str]:
        """Clients of the job that are gone for good (lost, failed, stopped, or skipped at
        dispatch), as the orchestrator told this participant. Each change also arrives as a
        message from ``ORCHESTRATOR`` with body ``{"type": "membership", "gone": [...]}``."""
        ...

    @property
    def client_index(self) -> int | None:
        """``i`` for ``client-<i>``; ``None`` for the server."""
        ...

    @property
    def client_count(self) -> int: ...
    @property
    def min_clients(self) -> int:
        """How many clients must take part for the job to go on (all unless the spec says)."""
        ...

    @property
    def log(self) -> FilteringBoundLogger:
        """A structlog logger bound with ``job_id`` and ``participant``."""
        ...

    async def report_metrics(self, round: int, metrics: Mapping[str, float]) -> None:
        """Record metrics for ``round`` (idempotent per job, participant and round)."""
        ...

    async def round_started(self, round: int) -> None:
        """The server announces that ``round`` began. A no-op for clients."""
        ...

    async def save_checkpoint(
        self, round: int, data: bytes, *, final: bool = False, ext: str = "npz"
    ) -> str:
        """Store checkpoint bytes; returns the object key at once, uploads in the background."""
        ...

    async def load_checkpoint(self, key: str, *, sha256: str | None = None) -> bytes:
        """Bytes of a checkpoint saved earlier (by this job or another), sha256-verified:
        against ``sha256`` when given (pass the manifest's, from ``orchestrator checkpoints
        JOB --json``), else against what this run's upload recorded, else the store's own."""
        ...

    async def put_blob(self, name: str, data: bytes) -> str:
        """Store bytes for the other participants; returns the key to send them.

        On a worker, object-store outages are retried within the worker's retry budget
        (``ORCHESTRATOR_STORAGE_RETRY_S``) for ``load_checkpoint``, ``put_blob`` and
        ``get_blob``; past it they raise ``StorageOutageError`` and the participant fails with
        ``storage_unavailable``.
        """
        ...

    async def get_blob(self, key: str) -> bytes:
        """Bytes stored by ``put_blob`` (any participant of the job), sha256-verified."""
        ...

    async def send(self, to: str, body: Mapping[str, Any]) -> None:
        """Send a small JSON object (see :data:`MAX_MESSAGE_BYTES`) to participant ``to``."""
        ...

    async def receive(self, *, timeout_s: float | None = None) -> PeerMessage:
        """The next message for this participant; raises ``TimeoutError`` after ``timeout_s``."""
        ...

    def cancelled(self) -> bool:
        """True once a stop was requested."""
        ...

    async def checkpoint_cancel(self) -> None:
        """Raise :class:`WorkloadCancelled` if a stop was requested; call it between steps."""
        ...


WorkloadFn = Callable[[WorkloadContext], Awaitable[WorkloadResult | None]]
"""The shape of a workload: ``async def name(ctx) -> WorkloadResult | None``."""


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload function and its declared configuration models (None: any config)."""

    fn: WorkloadFn
    server_config: type[BaseModel] | None = None
    client_config: type[BaseModel] | None = None
    version: str = "1"
    light: bool = False
    """Light enough to run inline, in the worker's own event loop (it never blocks it, as
    ``noop`` does not); others run in a child process of their own (``workers.isolation``)."""

    def config_model(self, role: Role) -> type[BaseModel] | None:
        return self.server_config if role is Role.SERVER else self.client_config

    def describe(self) -> dict[str, Any]:
        """Version and config JSON Schemas, as a worker advertises them."""
        return {"version": self.version,
                "server_config": _schema(self.server_config),
                "client_config": _schema(self.client_config)}


def _schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return None if model is None else model.model_json_schema()
