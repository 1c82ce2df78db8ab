"""Commands: what the daemon tells a worker to do, one stream per worker."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from orchestrator.core._types import FROZEN, JsonObject, Name
from orchestrator.core.status import Role


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
