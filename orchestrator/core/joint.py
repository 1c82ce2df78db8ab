"""The joint-state table: what the participants' states mean for an IN_PROGRESS job.

``JOINT`` is read top to bottom and the first rule whose condition holds wins (the last
always does): all stopped after a cancel ends the job cancelled, a failed or stopped server
ends it with an error, a finished server whose final checkpoint is recorded and whose clients
have ended ends it successfully (else it waits in ``finalizing``), too few healthy clients
end it with an error, otherwise it is ``running`` or ``starting``. ``decide``
(``orchestrator.core.machine``) calls :func:`settle` after every event that changed a
participant's state, the phase or the round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.core.deadlines import ACTIVE_STATES
from orchestrator.core.draft import DOWN_STATES, HEALTHY_STATES, Draft
from orchestrator.core.job import JobError, Participant
from orchestrator.core.status import JobStatus, ParticipantState, Phase, Role


@dataclass(frozen=True, slots=True)
class Joint:
    """What ``JOINT`` looks at: the participants' states, summed up in one pass."""

    cancelling: bool
    active: int
    server: Participant
    final_recorded: bool
    healthy_clients: int
    required_clients: int
    client_error: JobError | None
    round: int


@dataclass(frozen=True, slots=True)
class JointRule:
    """When ``when`` holds, the job ends in ``ends`` (with ``reason`` and ``error``) or,
    when ``ends`` is None, stays IN_PROGRESS in ``phase`` (None: as it is)."""

    name: str
    when: Callable[[Joint], bool]
    ends: JobStatus | None = None
    phase: Phase | None = None
    reason: Callable[[Joint], str] = lambda j: ""
    error: Callable[[Joint], JobError | None] = lambda j: None


JOINT: tuple[JointRule, ...] = (
    JointRule("cancelled: nobody active", lambda j: j.cancelling and j.active == 0,
              ends=JobStatus.FINISHED_CANCELLED,
              reason=lambda j: "cancelled: all participants stopped"),
    JointRule("cancelling: waiting for stops", lambda j: j.cancelling),
    JointRule("server down", lambda j: j.server.state in DOWN_STATES,
              ends=JobStatus.FINISHED_WITH_ERROR,
              reason=lambda j: f"server {j.server.state}", error=lambda j: j.server.error),
    JointRule("server finished, final checkpoint recorded, clients done",
              lambda j: (j.server.state is ParticipantState.FINISHED and j.final_recorded
                         and j.active == 0),
              ends=JobStatus.FINISHED_SUCCESSFULLY, reason=lambda j: "server finished"),
    JointRule("server finished, final checkpoint or clients pending",
              lambda j: j.server.state is ParticipantState.FINISHED, phase=Phase.FINALIZING),
    JointRule("too few healthy clients", lambda j: j.healthy_clients < j.required_clients,
              ends=JobStatus.FINISHED_WITH_ERROR, error=lambda j: j.client_error,
              reason=lambda j: f"{j.healthy_clients} healthy clients left, "
                               f"{j.required_clients} required"),
    JointRule("a round under way", lambda j: j.round >= 1, phase=Phase.RUNNING),
    JointRule("starting", lambda j: True, phase=Phase.STARTING),
)


def final_recorded(d: Draft) -> bool:
    """Whether the final checkpoint the server named (if it named one) is the job's recorded
    final checkpoint: the result is complete."""
    wanted = d.participants["server"].final_checkpoint
    final = d.get("final_checkpoint")
    return wanted is None or (final is not None and final.key == wanted)


def joint_state(d: Draft) -> Joint:
    """The participants' states of the draft, summed up for ``JOINT``."""
    parts = d.participants.values()
    server = d.participants["server"]
    clients = [p for p in parts if p.role is Role.CLIENT]
    return Joint(
        cancelling=d.get("phase") is Phase.CANCELLING,
        active=sum(p.state in ACTIVE_STATES for p in parts),
        server=server,
        final_recorded=final_recorded(d),
        healthy_clients=sum(p.state in HEALTHY_STATES for p in clients),
        required_clients=d.original.spec.required_clients,
        client_error=next((p.error for p in clients
                           if p.state in DOWN_STATES and p.error is not None), None),
        round=d.get("round"),
    )


def first_rule(state: Joint) -> JointRule:
    """The first rule of ``JOINT`` that holds (the last one always does)."""
    return next(rule for rule in JOINT if rule.when(state))


def settle(d: Draft) -> None:
    """Apply the first ``JOINT`` rule that holds: end the job, or set its phase."""
    state = joint_state(d)
    rule = first_rule(state)
    if rule.ends is not None:
        d.rule = f"joint: {rule.name}"
        d.set_status(rule.ends, rule.reason(state), rule.error(state))
    elif rule.phase is not None:
        d.set("phase", rule.phase)
