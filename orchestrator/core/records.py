"""What a decision produces besides the new job: metrics rows, manifest rows, outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from orchestrator.core.commands import Command
from orchestrator.core.job import HistoryEntry, Job
from orchestrator.core.status import Role


class MetricRecord(NamedTuple):
    """One (job, participant, round) metrics row; upserted, so resends are harmless."""

    job_id: str
    participant: str
    role: Role
    round: int
    metrics: dict[str, float]
    at: datetime
    event_id: str


class CheckpointRecord(NamedTuple):
    """One manifest row (job, round, participant) -> object key, size, sha256, parent."""

    job_id: str
    participant: str
    round: int
    key: str
    size: int
    sha256: str
    parent: str | None
    final: bool
    at: datetime
    event_id: str


class Outcome(NamedTuple):
    """What one event did: ``applied`` when it changed the job or recorded a row."""

    event_id: str
    job_id: str
    applied: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of ``decide`` for one job and the events of one batch.

    ``job`` is the job after the events (the same object when nothing changed, otherwise
    with ``version`` one higher). ``changed`` lists the document paths whose value changed
    (``status``, ``participants.server.last_seen``, …) so a store can write just those;
    ``history`` the entries to append. ``announce`` is true when a watcher should hear of
    it: status, phase, round, error or checkpoints changed, or a participant ended (not for
    liveness, metrics or a participant starting alone).
    """

    job: Job
    changed: tuple[str, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    commands: tuple[Command, ...] = ()
    metrics: tuple[MetricRecord, ...] = ()
    checkpoints: tuple[CheckpointRecord, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    announce: bool = False
    reason: str = ""

    @property
    def applied(self) -> bool:
        """True when anything is to be written: the job, metrics or manifest rows."""
        return bool(self.changed) or bool(self.metrics) or bool(self.checkpoints)
