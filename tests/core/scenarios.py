"""Builders for jobs and participant events, shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.core import (
    CheckpointSaved,
    Decision,
    Event,
    Heartbeat,
    Job,
    JobDispatched,
    JobSpec,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
    decide,
    joint,
)
from orchestrator.core import new_job as core_new_job
from orchestrator.core.draft import Draft

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SHA = "0" * 64


def spec(
    clients: int = 2, *, min_clients: int | None = None, rounds: int = 2, **timeouts: float | None
) -> JobSpec:
    data: dict[str, Any] = {
        "workload": "fedavg",
        "server": {"worker": "srv"},
        "clients": [{"worker": f"cli{i}"} for i in range(clients)],
        "rounds": rounds,
        "min_clients": min_clients,
        "timeouts": {
            "heartbeat_s": 10,
            "start_s": 30,
            "round_s": 60,
            "job_s": 600,
            "cancel_grace_s": 5,
            **timeouts,
        },
    }
    return JobSpec.model_validate(data)


def new_job(s: JobSpec | None = None, job_id: str = "job1") -> Job:
    """A submitted (NOT_STARTED) job at ``T0``."""
    return core_new_job(job_id, s or spec(), T0)


def decide_one(job: Job, event: Event, now: datetime) -> Decision:
    """``decide`` for a batch of one event."""
    return decide(job, [event], now)


def dispatched(job: Job | None = None) -> Job:
    job = job or new_job()
    event = JobDispatched(
        event_id="dispatch", job_id=job.id, assignments={p: f"run-{p}" for p in job.participants}
    )
    return decide_one(job, event, T0).job


def worker_of(job: Job, participant: str) -> str:
    return job.participants[participant].worker


class Emitter:
    """Produces one participant's events with growing seq, like a real worker does."""

    def __init__(self, job: Job, participant: str) -> None:
        self.job_id, self.participant = job.id, participant
        self.worker = worker_of(job, participant)
        self.seq = 0

    def _make(self, cls: type[Any], **fields: Any) -> Event:
        self.seq += 1
        event: Event = cls(
            event_id=f"{self.participant}-{self.seq}",
            job_id=self.job_id,
            participant=self.participant,
            worker=self.worker,
            seq=self.seq,
            **fields,
        )
        return event

    def started(self) -> Event:
        return self._make(ParticipantStarted)

    def heartbeat(self, round_: int | None = None) -> Event:
        return self._make(Heartbeat, round=round_)

    def round_started(self, round_: int) -> Event:
        return self._make(RoundStarted, round=round_)

    def metrics(self, round_: int, **values: float) -> Event:
        return self._make(RoundMetrics, round=round_, metrics=values or {"loss": 1.0 / round_})

    def checkpoint(self, round_: int, *, final: bool = False) -> Event:
        key = f"jobs/{self.job_id}/checkpoints/{round_}/{self.participant}.npz"
        return self._make(CheckpointSaved, round=round_, key=key, size=10, sha256=SHA, final=final)

    def finished(self, final_checkpoint: str | None = None) -> Event:
        return self._make(ParticipantFinished, final_checkpoint=final_checkpoint)

    def failed(self, message: str = "boom") -> Event:
        return self._make(ParticipantFailed, message=message)

    def stopped(self) -> Event:
        return self._make(ParticipantStopped, reason="stopped")


def run(job: Job, events: Sequence[Event], now: datetime | None = None
        ) -> tuple[Job, list[Decision]]:
    """Decide the events one at a time (each its own batch), 1 ms apart unless ``now``."""
    decisions = []
    for i, event in enumerate(events):
        d = decide_one(job, event, now or T0 + timedelta(milliseconds=i + 1))
        decisions.append(d)
        job = d.job
    return job, decisions


@contextmanager
def joint_rules_hit() -> Iterator[list[str]]:
    """Record the name of every ``JOINT`` rule ``decide`` settles a job with, while open.

    (``settle`` looks ``first_rule`` up in its module on each call, so wrapping it there sees
    exactly the rules the real code path picks.)
    """
    hit: list[str] = []
    real = joint.first_rule

    def recording(state: joint.Joint) -> joint.JointRule:
        rule = real(state)
        hit.append(rule.name)
        return rule

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(joint, "first_rule", recording)
        yield hit


def joint_of(job: Job) -> joint.Joint:
    """The joint state ``decide`` would read from ``job`` (through the joint table's own summary,
    so the test and the code cannot disagree on what it means)."""
    return joint.joint_state(Draft(job, job.updated_at))
