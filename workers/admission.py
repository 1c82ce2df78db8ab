"""Whether this worker takes a start command, and the command as its run will see it.

A start is refused (the participant then fails at once, without ``started``) when the worker
has the other role (``cannot_schedule``), does not know the workload, or the ``data_path`` is
not allowed under the worker's data root, or the workload's config is not valid
(``invalid_spec``, see :mod:`workers.data_paths` and :mod:`workers.registry`). An admitted
command carries its data path as confined and its config validated, defaults filled in.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.commands import StartParticipant
from orchestrator.core.status import ErrorCode
from orchestrator.errors import UnknownWorkloadError
from workers.config import AgentConfig
from workers.data_paths import DataPathError, confine
from workers.registry import ConfigError, Workload, get_spec, validate_config


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a start is refused: the code and message of the participant's ``failed`` event."""

    code: ErrorCode
    message: str


def admit(command: StartParticipant, config: AgentConfig
          ) -> tuple[StartParticipant, Workload] | Refusal:
    """The start as its run will see it and its workload, or why this worker refuses it."""
    if command.role is not config.role:
        return Refusal(ErrorCode.CANNOT_SCHEDULE,
                       f"worker {config.name} is a {config.role.value} worker and cannot run "
                       f"{command.participant}, whose role is {command.role.value}")
    try:
        spec = get_spec(command.workload)
        data_path = confine(command.data_path, config.data_root)
        # the workload sees its config validated, with its defaults filled in
        workload_config = validate_config(command.workload, command.role, command.config)
    except (UnknownWorkloadError, DataPathError, ConfigError) as exc:
        return Refusal(ErrorCode.INVALID_SPEC, str(exc))
    if data_path != command.data_path or workload_config != command.config:
        command = command.model_copy(update={"data_path": data_path, "config": workload_config})
    return command, spec
