"""Build realistic jobs in a store without a daemon: events applied through the real ``decide``."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.core import (
    CheckpointSaved,
    Event,
    Heartbeat,
    Job,
    JobDispatched,
    JobSpec,
    ParticipantFinished,
    ParticipantStarted,
    RoundMetrics,
    RoundStarted,
    new_job,
)
from orchestrator.daemon.apply import apply_events
from orchestrator.store import JobStore


def spec(job_id: str, *, clients: int = 2, rounds: int = 3, workload: str = "fedavg") -> JobSpec:
    return JobSpec.model_validate(
        {
            "job_id": job_id,
            "workload": workload,
            "server": {"worker": "srv-1"},
            "clients": [{"worker": f"cli-{i}"} for i in range(clients)],
            "rounds": rounds,
        }
    )


class JobBuilder:
    """Drives one job through its life by applying events to a store."""

    def __init__(self, store: JobStore, job_id: str, *, clients: int = 2, rounds: int = 3,
                 start: datetime | None = None) -> None:
        self.store = store
        self.job_id = job_id
        self.rounds = rounds
        self.clients = [f"client-{i}" for i in range(clients)]
        self.now = start or datetime.now(UTC) - timedelta(minutes=5)
        self.seq: dict[str, int] = {}
        self.spec = spec(job_id, clients=clients, rounds=rounds)
        self.objects: dict[str, bytes] = {}

    def _tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def _pe(self, cls: type[Any], participant: str, **fields: Any) -> Event:
        self.seq[participant] = self.seq.get(participant, -1) + 1
        worker = "srv-1" if participant == "server" else f"cli-{participant.split('-')[1]}"
        event: Event = cls(event_id=uuid.uuid4().hex, job_id=self.job_id,
                           participant=participant, worker=worker,
                           seq=self.seq[participant], **fields)
        return event

    async def apply(self, *events: Event) -> Job:
        result = await apply_events(self.store, list(events), self._tick())
        assert all(o.applied or "duplicate" in o.reason for o in result.outcomes), result.outcomes
        return await self.store.get(self.job_id)

    async def create(self) -> Job:
        job, _ = await self.store.create(new_job(self.job_id, self.spec, self._tick()))
        return job

    async def start(self) -> Job:
        ids = {p: uuid.uuid4().hex for p in ["server", *self.clients]}
        await self.apply(JobDispatched(event_id=uuid.uuid4().hex, job_id=self.job_id,
                                       assignments=ids))
        return await self.apply(*(self._pe(ParticipantStarted, p)
                                  for p in ["server", *self.clients]))

    def checkpoint(self, participant: str, round_: int, *, final: bool = False) -> Event:
        data = f"{self.job_id}/{participant}/{round_}".encode() * 10
        key = f"jobs/{self.job_id}/{participant}/round-{round_:04d}.npz"
        self.objects[key] = data
        return self._pe(CheckpointSaved, participant, round=round_, key=key, size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), final=final)

    async def round(self, r: int) -> Job:
        await self.apply(self._pe(RoundStarted, "server", round=r))
        events: list[Event] = []
        for i, c in enumerate(self.clients):
            events.append(self._pe(Heartbeat, c, round=r))
            events.append(self._pe(RoundMetrics, c, round=r,
                                   metrics={"loss": 1.0 / r + i * 0.01, "samples": 400.0}))
        events.append(self._pe(RoundMetrics, "server", round=r,
                               metrics={"accuracy": 0.5 + 0.1 * r, "loss": 1.2 / r}))
        events.append(self.checkpoint("server", r, final=r == self.rounds))
        return await self.apply(*events)

    async def finish(self) -> Job:
        final = f"jobs/{self.job_id}/server/round-{self.rounds:04d}.npz"
        events = [self._pe(ParticipantFinished, c) for c in self.clients]
        events.append(self._pe(ParticipantFinished, "server", final_checkpoint=final))
        return await self.apply(*events)

    async def run_all(self) -> Job:
        await self.create()
        await self.start()
        for r in range(1, self.rounds + 1):
            await self.round(r)
        return await self.finish()
