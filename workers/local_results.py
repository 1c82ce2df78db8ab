"""What a local run records: how each participant ended, the checkpoints it saved, and the
:class:`LocalJobResult` that :func:`workers.local.run_local_job` returns."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Literal

from workers.sdk import SERVER_ID, WorkloadResult

OutcomeState = Literal["finished", "failed", "stopped", "killed"]


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """One saved checkpoint (the manifest entry the real system keeps in Mongo)."""

    key: str
    participant: str
    round: int
    final: bool
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ParticipantOutcome:
    """How one participant ended: its result, or the error it raised."""

    participant: str
    state: OutcomeState
    result: WorkloadResult | None = None
    error: Exception | None = None


@dataclass(slots=True)
class LocalJobResult:
    """Everything a local run recorded."""

    job_id: str
    outcomes: dict[str, ParticipantOutcome]
    metrics: dict[str, dict[int, dict[str, float]]]
    """participant → round → metrics"""
    rounds_started: list[int]
    checkpoint_records: list[CheckpointRecord]
    store: MutableMapping[str, bytes]

    @property
    def server(self) -> ParticipantOutcome:
        return self.outcomes[SERVER_ID]

    @property
    def succeeded(self) -> bool:
        return self.server.state == "finished"

    @property
    def checkpoints(self) -> dict[str, bytes]:
        """Checkpoint key → bytes, in the order they were saved."""
        return {record.key: self.store[record.key] for record in self.checkpoint_records}

    @property
    def final_checkpoint(self) -> str | None:
        result = self.server.result
        return result.final_checkpoint if result is not None else None

    @property
    def final_checkpoint_bytes(self) -> bytes | None:
        key = self.final_checkpoint
        return self.store[key] if key is not None else None
