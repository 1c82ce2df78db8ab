"""Commands: what the daemon tells a worker to do, one stream per worker."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from orchestrator.core._types import FROZEN, JsonObject, Name, is_name
from orchestrator.core.spec import client_index
from orchestrator.core.status import Role

if TYPE_CHECKING:
    from orchestrator.core.job import Job, Participant

#: Commands may carry secrets: a validation error never quotes their input.
_COMMAND_CONFIG = ConfigDict(**FROZEN, hide_input_in_errors=True)


class StartParticipant(BaseModel):
    """Run one participant of a job. Everything the workload needs is in here: data only."""

    model_config = _COMMAND_CONFIG

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
    config: JsonObject = Field(default_factory=dict)  # the participant's own config
    data_path: str | None = None
    peers: list[Name] = Field(default_factory=list)  # every participant id of the job
    client_index: int | None = None
    client_count: int = 0
    min_clients: int = 0
    heartbeat_interval_s: float = 5.0
    round_timeout_s: float | None = None
    #: The run's secret (``core.auth.run_secret``): the worker signs the run's events with it.
    #: Filled in by the daemon as it sends the command; never stored, never shown in a repr.
    run_secret: str | None = Field(default=None, repr=False, max_length=128)
    #: The job's mailbox key (``core.auth.mailbox_key``): signs and checks peer messages.
    mailbox_key: str | None = Field(default=None, repr=False, max_length=128)


class StopParticipant(BaseModel):
    model_config = _COMMAND_CONFIG

    type: Literal["participant.stop"] = "participant.stop"
    command_id: Name
    job_id: Name
    participant: Name
    worker: Name
    reason: Annotated[str, Field(max_length=4096)] = ""
    #: The run to stop, when known: the daemon then adds its secret (``run_secret``), so a
    #: worker that no longer runs it can still say ``participant.stopped``.
    run_id: Name | None = None
    run_secret: str | None = Field(default=None, repr=False, max_length=128)


class MembershipChanged(BaseModel):
    """Tell a running server that clients of its job are gone (lost, failed, stopped, or
    skipped at dispatch), so its workload goes on without them at once."""

    model_config = _COMMAND_CONFIG

    type: Literal["participant.membership"] = "participant.membership"
    command_id: Name
    job_id: Name
    participant: Name  # the server
    worker: Name
    run_id: Name | None = None
    gone: list[Name]  # the clients gone with this change
    reason: Annotated[str, Field(max_length=4096)] = ""


Command = Annotated[StartParticipant | StopParticipant | MembershipChanged,
                    Field(discriminator="type")]
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
        config=pspec.config,
        data_path=pspec.data_path,
        peers=list(job.participants),
        client_index=None if is_server else client_index(p.id),
        client_count=len(spec.clients),
        min_clients=spec.required_clients,
        heartbeat_interval_s=max(0.05, spec.timeouts.heartbeat_s / 3),
        round_timeout_s=spec.timeouts.round_s,
    )
