"""The workload SDK: everything a workload sees of the orchestrator.

A workload is ``async def my_workload(ctx: WorkloadContext) -> WorkloadResult | None``,
registered by name (:mod:`workers.registry`). A job spec only ever names it.

``WorkloadContext`` is a Protocol with two implementations: the real one on top of Redis Streams
and S3 (used by worker processes) and the in-memory one in :mod:`workers.local` (tests, trying a
workload on a laptop). Model bytes travel through the object store (``put_blob``/``get_blob``);
only their keys travel as peer messages, which must be small JSON objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio.lowlevel
from pydantic import BaseModel
from structlog.typing import FilteringBoundLogger

from orchestrator.core.status import Role
from orchestrator.errors import OrchestratorError, StorageError, WorkloadError
from orchestrator.storage.checkpoints import checkpoint_key

SERVER_ID = "server"
"""The participant id of a job's server."""

ORCHESTRATOR = "orchestrator"
"""The sender of the messages the orchestrator itself puts in a participant's inbox."""

MAX_MESSAGE_BYTES = 64 * 1024
"""The largest peer message body, measured as compact JSON."""

_BLOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_BLOB_KEY = re.compile(r"^jobs/[^/]+/blobs/[^/]+/([0-9a-f]{64})/[^/]+$")


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

    async def load_checkpoint(self, key: str) -> bytes:
        """Bytes of a checkpoint saved earlier (by this job or another)."""
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

    def config_model(self, role: Role) -> type[BaseModel] | None:
        return self.server_config if role is Role.SERVER else self.client_config

    def describe(self) -> dict[str, Any]:
        """Version and config JSON Schemas, as a worker advertises them."""
        return {"version": self.version,
                "server_config": _schema(self.server_config),
                "client_config": _schema(self.client_config)}


def _schema(model: type[BaseModel] | None) -> dict[str, Any] | None:
    return None if model is None else model.model_json_schema()


def encode_message_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Check that ``body`` is a small JSON object and return a JSON round-tripped copy.

    The copy is what the receiver gets, whatever the transport: tuples become lists, and the
    sender cannot mutate a message after sending it.
    """
    if not isinstance(body, Mapping):
        msg = f"a peer message body must be a JSON object, not {type(body).__name__}"
        raise PeerMessageError(msg)
    try:
        raw = json.dumps(body, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        msg = f"a peer message body must be JSON-serialisable: {exc}"
        raise PeerMessageError(msg) from exc
    if len(raw.encode()) > MAX_MESSAGE_BYTES:
        msg = (
            f"a peer message body is {len(raw.encode())} bytes as JSON; the limit is "
            f"{MAX_MESSAGE_BYTES}: put large data with put_blob and send its key"
        )
        raise PeerMessageError(msg)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def check_recipient(sender: str, to: str, peers: Sequence[str]) -> None:
    """Raise :class:`PeerMessageError` unless ``to`` is another participant of the job."""
    if to == sender:
        msg = f"{sender} tried to send a message to itself"
        raise PeerMessageError(msg)
    if to not in peers:
        msg = f"unknown peer {to!r}; the job's participants are {', '.join(peers)}"
        raise PeerMessageError(msg)


def config_float(
    config: Mapping[str, Any], name: str, default: float, *, minimum: float | None = None
) -> float:
    """A finite number from a workload config, with a clear error when it is not one."""
    value = config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        msg = f"config {name!r} must be a finite number, not {value!r}"
        raise WorkloadError(msg)
    if minimum is not None and value < minimum:
        msg = f"config {name!r} must be >= {minimum}, not {value!r}"
        raise WorkloadError(msg)
    return float(value)


def config_int(
    config: Mapping[str, Any], name: str, default: int, *, minimum: int | None = None
) -> int:
    """An integer from a workload config, with a clear error when it is not one."""
    value = config.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"config {name!r} must be an integer, not {value!r}"
        raise WorkloadError(msg)
    if minimum is not None and value < minimum:
        msg = f"config {name!r} must be >= {minimum}, not {value!r}"
        raise WorkloadError(msg)
    return value


MAX_METRICS = 64
"""Most metrics one ``report_metrics`` call may carry."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a participant is: the data every ``WorkloadContext`` exposes as properties."""

    job_id: str
    participant: str
    role: Role
    run_id: str
    config: Mapping[str, Any]
    data_path: str | None
    model: str | None
    rounds: int
    peers: tuple[str, ...]
    client_index: int | None
    client_count: int
    min_clients: int


class ContextBase:
    """Identity and cooperative cancellation, shared by every context implementation.

    Subclasses add reporting, objects and messages; ``_stop_requested`` is set by their own
    stop method (which may also wake a blocked ``receive``).
    """

    def __init__(self, identity: Identity, log: FilteringBoundLogger) -> None:
        self._identity = identity
        self._log = log
        self._stop_requested = False
        self._gone: frozenset[str] = frozenset()

    @property
    def job_id(self) -> str:
        return self._identity.job_id

    @property
    def participant(self) -> str:
        return self._identity.participant

    @property
    def role(self) -> Role:
        return self._identity.role

    @property
    def run_id(self) -> str:
        return self._identity.run_id

    @property
    def config(self) -> Mapping[str, Any]:
        return self._identity.config

    @property
    def data_path(self) -> str | None:
        return self._identity.data_path

    @property
    def model(self) -> str | None:
        return self._identity.model

    @property
    def rounds(self) -> int:
        return self._identity.rounds

    @property
    def peers(self) -> Sequence[str]:
        return self._identity.peers

    @property
    def gone_peers(self) -> frozenset[str]:
        return self._gone

    def note_gone(self, gone: Sequence[str], reason: str) -> None:
        """Record clients gone and queue the ``membership`` message (see ``gone_peers``)."""
        new = frozenset(gone) - self._gone
        if not new:
            return
        self._gone |= new
        self._deliver(PeerMessage(sender=ORCHESTRATOR, body={
            "type": "membership", "gone": sorted(new), "reason": reason}))

    def _deliver(self, message: PeerMessage) -> None:
        """Put a message in this participant's inbox (each context has its own)."""
        raise NotImplementedError

    @property
    def client_index(self) -> int | None:
        return self._identity.client_index

    @property
    def client_count(self) -> int:
        return self._identity.client_count

    @property
    def min_clients(self) -> int:
        return self._identity.min_clients

    @property
    def log(self) -> FilteringBoundLogger:
        return self._log

    def cancelled(self) -> bool:
        return self._stop_requested

    def _checkpoint_key(self, round: int, data: bytes, ext: str) -> str:
        """The key ``save_checkpoint(round, data, ext=ext)`` stores under; WorkloadError if bad."""
        check_round(round, minimum=0)
        if not isinstance(data, bytes | bytearray | memoryview):
            msg = f"checkpoint data must be bytes, not {type(data).__name__}"
            raise WorkloadError(msg)
        try:
            return checkpoint_key(self.job_id, round, self.participant, ext=ext)
        except StorageError as exc:
            raise WorkloadError(str(exc)) from exc

    def _blob_key(self, name: str, sha256: str) -> str:
        """The key ``put_blob(name, data)`` stores under (``sha256`` is the data's); raises
        WorkloadError for an unsafe name.

        The key carries the bytes' sha256, so ``get_blob`` verifies them without relying on the
        store's metadata (which rclone, for one, loses when it restarts).
        """
        if not isinstance(name, str) or not _BLOB_NAME.match(name):
            msg = f"invalid blob name {name!r}: use letters, digits, '_', '.', '-'"
            raise WorkloadError(msg)
        return f"jobs/{self.job_id}/blobs/{self.participant}/{sha256}/{name}"

    async def checkpoint_cancel(self) -> None:
        await anyio.lowlevel.checkpoint()
        if self._stop_requested:
            msg = f"{self.participant} was asked to stop"
            raise WorkloadCancelled(msg)


def blob_sha256(key: str) -> str | None:
    """The sha256 a ``put_blob`` key carries (``jobs/J/blobs/P/<sha256>/<name>``), else None."""
    match = _BLOB_KEY.match(key) if isinstance(key, str) else None
    return match.group(1) if match else None


def check_round(round: int, *, minimum: int) -> None:
    """Rounds are plain integers from ``minimum`` up (metrics may use round 0)."""
    if isinstance(round, bool) or not isinstance(round, int) or round < minimum:
        msg = f"round must be an integer >= {minimum}, not {round!r}"
        raise WorkloadError(msg)


def validate_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics as finite floats under names of 1 to 128 characters, at most MAX_METRICS."""
    if len(metrics) > MAX_METRICS:
        msg = f"at most {MAX_METRICS} metrics per round, got {len(metrics)}"
        raise WorkloadError(msg)
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not 0 < len(name) <= 128:
            msg = f"metric name {name!r} must be a string of 1 to 128 characters"
            raise WorkloadError(msg)
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"metric {name!r} must be a number, not {value!r}"
            raise WorkloadError(msg)
        if not math.isfinite(value):
            msg = f"metric {name!r} is {value}; metrics must be finite"
            raise WorkloadError(msg)
        clean[name] = float(value)
    return clean
