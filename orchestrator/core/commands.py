"""Commands: what the daemon tells a worker to do, one stream per worker."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from orchestrator.core._types import FROZEN, JsonObject, Name, is_name
from orchestrator.core.spec import client_index
from orchestrator.core.status import Role

if TYPE_CHECKING:
    from orchestrator.core.job import Job, Participant


class StartParticipant(BaseModel):
    """Run one participant of a job. Everything the workload needs is in here: data only."""

    model_config = FROZEN

    type: Literal["participant.start"] = "participant.start"
    command_id: Name
    job_id: Name
    participant: Name
    run_id: Name
    role: Role
    worker: Name
    workload: Name
    model: str | None = None
    rounds: int
    config: JsonObject = Field(default_factory=dict)  # server_config, or the client's config
    data_path: str | None = None
    peers: list[Name] = Field(default_factory=list)  # every participant id of the job
    client_index: int | None = None
    client_count: int = 0
    min_clients: int = 0
    heartbeat_interval_s: float = 5.0
    round_timeout_s: float | None = None


class StopParticipant(BaseModel):
    model_config = FROZEN

    type: Literal["participant.stop"] = "participant.stop"
    command_id: Name
    job_id: Name
    participant: Name
    worker: Name
    reason: Annotated[str, Field(max_length=4096)] = ""


Command = Annotated[StartParticipant | StopParticipant, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)


def command_id(event_id: str, action: str, participant: str) -> str:
    """``{event_id}.{action}.{participant}``, or a digest of it when that is not a valid name.

    Event ids are free text (up to 128 characters, any producer's choice) while command ids
    must be names; a deterministic digest keeps resends deduplicable either way.
    """
    plain = f"{event_id}.{action}.{participant}"
    if is_name(plain):
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:40]
    return f"c{digest}.{action}.{participant}"[:128]


def start_command(job: Job, p: Participant, *, run_id: str, command_id: str) -> StartParticipant:
    """The start command of one participant (sent at dispatch; re-sent by reconciliation)."""
    spec = job.spec
    pspec = spec.participant_spec(p.id)
    is_server = p.role is Role.SERVER
    return StartParticipant(
        command_id=command_id,
        job_id=job.id,
        participant=p.id,
        run_id=run_id,
        role=p.role,
        worker=p.worker,
        workload=spec.workload,
        model=spec.model,
        rounds=spec.rounds,
        config=spec.server_config if is_server else pspec.config,
        data_path=pspec.data_path,
        peers=list(job.participants),
        client_index=None if is_server else client_index(p.id),
        client_count=len(spec.clients),
        min_clients=spec.required_clients,
        heartbeat_interval_s=max(0.05, spec.timeouts.heartbeat_s / 3),
        round_timeout_s=spec.timeouts.round_s,
    )
