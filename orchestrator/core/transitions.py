"""The transitions table: (status, event type) -> rule. Data, walked by tests and docs.

Each rule names the handler ``decide`` runs and the statuses the job may end in. ``decide``
checks every result against its rule, so the table is the law, not a comment.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.core.events import EVENT_TYPES
from orchestrator.core.status import TERMINAL, JobStatus

NS, IP = JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS
OK, ERR, CXL = (
    JobStatus.FINISHED_SUCCESSFULLY,
    JobStatus.FINISHED_WITH_ERROR,
    JobStatus.FINISHED_CANCELLED,
)


@dataclass(frozen=True, slots=True)
class Rule:
    handler: str  # dispatch | participant | cancel | deadline | refuse | absorb
    targets: frozenset[JobStatus]
    summary: str


def _rule(handler: str, summary: str, *targets: JobStatus) -> Rule:
    return Rule(handler, frozenset(targets), summary)


_PARTICIPANT_RULES: dict[str, Rule] = {
    "participant.started": _rule("participant", "participant running", IP),
    "participant.heartbeat": _rule("participant", "liveness", IP),
    "round.started": _rule("participant", "round progress", IP),
    "round.metrics": _rule("participant", "metrics recorded", IP),
    "checkpoint.saved": _rule("participant", "final checkpoint durable", IP, OK),
    "participant.finished": _rule("participant", "server finished", IP, OK, CXL),
    "participant.failed": _rule("participant", "participant failed", IP, ERR, CXL),
    "participant.stopped": _rule("participant", "participant stopped", IP, ERR, CXL),
}

TABLE: dict[tuple[JobStatus, str], Rule] = {
    (NS, "job.dispatched"): _rule("dispatch", "dispatched (refused if too few)", NS, IP),
    (NS, "cancel.requested"): _rule("cancel", "cancel", CXL),
    (NS, "deadline.expired"): _rule("deadline", "start deadline", NS, ERR),
    **{(NS, t): _rule("refuse", "job not dispatched yet", NS) for t in _PARTICIPANT_RULES},
    (IP, "job.dispatched"): _rule("refuse", "already dispatched", IP),
    (IP, "cancel.requested"): _rule("cancel", "cancel", IP, CXL),
    (IP, "deadline.expired"): _rule("deadline", "deadline", IP, ERR, CXL),
    **{(IP, t): rule for t, rule in _PARTICIPANT_RULES.items()},
    **{
        (s, t): _rule("absorb", "terminal: status never changes", s)
        for s in TERMINAL
        for t in EVENT_TYPES
    },
}


def rule_for(status: JobStatus, event_type: str) -> Rule:
    return TABLE[(status, event_type)]


def edges() -> list[tuple[JobStatus, JobStatus, str]]:
    """Distinct (from, to, event type) edges that change the status, for the diagram."""
    out: set[tuple[JobStatus, JobStatus, str]] = set()
    for (status, event_type), rule in TABLE.items():
        for target in rule.targets:
            if target is not status:
                out.add((status, target, event_type))
    order = {s: i for i, s in enumerate(JobStatus)}
    return sorted(out, key=lambda e: (order[e[0]], order[e[1]], e[2]))


def mermaid() -> str:
    """The state diagram generated from the table (embedded in the README, kept in sync)."""
    lines = ["stateDiagram-v2", "    [*] --> NOT_STARTED: submitted"]
    grouped: dict[tuple[JobStatus, JobStatus], list[str]] = {}
    for src, dst, event_type in edges():
        grouped.setdefault((src, dst), []).append(event_type)
    for (src, dst), types in grouped.items():
        lines.append(f"    {src.value} --> {dst.value}: {', '.join(types)}")
    lines.extend(f"    {s.value} --> [*]" for s in JobStatus if s in TERMINAL)
    return "\n".join(lines)


assert all((s, t) in TABLE for s in JobStatus for t in EVENT_TYPES), "table is not total"
