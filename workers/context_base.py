"""The shared implementation base of every ``WorkloadContext``: a participant's identity,
cooperative cancellation and object keys (re-exported by :mod:`workers.sdk`)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio.lowlevel
from structlog.typing import FilteringBoundLogger

from orchestrator.core.status import Role
from orchestrator.errors import StorageError, WorkloadError
from orchestrator.storage.checkpoints import checkpoint_key
from workers.validation import check_round
from workers.workload_api import ORCHESTRATOR, PeerMessage, WorkloadCancelled

_BLOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_BLOB_KEY = re.compile(r"^jobs/[^/]+/blobs/[^/]+/([0-9a-f]{64})/[^/]+$")


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
