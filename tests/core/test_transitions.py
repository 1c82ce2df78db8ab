"""The transitions table: total, walked exhaustively, and FINISHED states without exits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.core import (
    EVENT_TYPES,
    TABLE,
    TERMINAL,
    CancelRequested,
    DeadlineExpired,
    Event,
    Job,
    JobDispatched,
    JobStatus,
    decide,
    mermaid,
)
from orchestrator.core.transitions import edges
from tests.core.scenarios import T0, Emitter, dispatched, new_job, run

README = Path(__file__).resolve().parents[2] / "README.md"


def job_in(status: JobStatus) -> Job:
    job = new_job()
    if status is JobStatus.NOT_STARTED:
        return job
    job = dispatched(job)
    if status is JobStatus.IN_PROGRESS:
        return job
    server = Emitter(job, "server")
    if status is JobStatus.FINISHED_SUCCESSFULLY:
        return run(job, [server.finished()])[0]
    if status is JobStatus.FINISHED_WITH_ERROR:
        return run(job, [server.failed()])[0]
    return _cancelled(job)


def _cancelled(job: Job) -> Job:
    job = decide(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    return run(job, [Emitter(job, p).stopped() for p in job.participants])[0]


def sample_event(job: Job, event_type: str) -> Event:
    if event_type == "job.dispatched":
        return JobDispatched(
            event_id="d2", job_id=job.id, assignments={p: "r" for p in job.participants}
        )
    if event_type == "cancel.requested":
        return CancelRequested(event_id="c2", job_id=job.id)
    if event_type == "deadline.expired":
        return DeadlineExpired(event_id="x", job_id=job.id, kind="start")
    e = Emitter(job, "server")
    e.seq = 100
    return {
        "participant.started": e.started,
        "participant.heartbeat": e.heartbeat,
        "round.started": lambda: e.round_started(1),
        "round.metrics": lambda: e.metrics(1),
        "checkpoint.saved": lambda: e.checkpoint(1),
        "participant.finished": e.finished,
        "participant.failed": e.failed,
        "participant.stopped": e.stopped,
    }[event_type]()


def test_table_is_total() -> None:
    assert len(TABLE) == len(JobStatus) * len(EVENT_TYPES)


@pytest.mark.parametrize("status", list(JobStatus))
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_pair_is_exercised(status: JobStatus, event_type: str) -> None:
    job = job_in(status)
    assert job.status is status
    later = T0.replace(year=2027)  # every deadline is due
    decision = decide(job, sample_event(job, event_type), later)
    rule = TABLE[(status, event_type)]
    assert decision.job.status in rule.targets
    if status in TERMINAL:
        assert decision.job.status is status
    if rule.handler == "refuse":
        assert decision.reason.startswith("refused")
        assert not decision.changed


def test_terminal_states_have_no_exits() -> None:
    for src, _dst, _event in edges():
        assert src not in TERMINAL


def test_every_state_is_reachable() -> None:
    reached = {JobStatus.NOT_STARTED} | {dst for _src, dst, _e in edges()}
    assert reached == set(JobStatus)


def test_every_declared_target_is_reached() -> None:
    """Each (status, event) -> target in the table happens for some concrete job."""
    later = T0.replace(year=2027)
    seen: set[tuple[JobStatus, str, JobStatus]] = set()
    jobs = [job_in(s) for s in JobStatus]
    # extra situations: cancelling jobs, finalizing jobs, lost clients with min_clients
    base = dispatched()
    cancelling = decide(base, CancelRequested(event_id="c", job_id=base.id), T0).job
    srv = Emitter(base, "server")
    finalizing = run(base, [srv.finished(final_checkpoint="jobs/job1/checkpoints/9/server.npz")])[0]
    last_one = run(
        cancelling, [Emitter(base, p).stopped() for p in base.participants if p != "server"]
    )[0]
    all_done = run(
        finalizing, [Emitter(base, p).finished() for p in base.participants if p != "server"]
    )[0]
    assert last_one.status is all_done.status is JobStatus.IN_PROGRESS
    jobs += [cancelling, finalizing, last_one, all_done]
    for job in jobs:
        for event_type in EVENT_TYPES:
            for participant in job.participants:
                event = sample_event(job, event_type)
                if hasattr(event, "participant"):
                    e = Emitter(job, participant)
                    e.seq = 100
                    event = event.model_copy(
                        update={"participant": participant, "worker": e.worker}
                    )
                if isinstance(event, DeadlineExpired):
                    for kind in ("start", "heartbeat", "round", "job", "cancel_grace", "finalize"):
                        ev = event.model_copy(
                            update={
                                "kind": kind,
                                "participant": participant if kind == "heartbeat" else None,
                            }
                        )
                        seen.add((job.status, event_type, decide(job, ev, later).job.status))
                    continue
                if event_type == "checkpoint.saved" and job is finalizing:
                    event = event.model_copy(
                        update={"key": "jobs/job1/checkpoints/9/server.npz", "final": True}
                    )
                seen.add((job.status, event_type, decide(job, event, later).job.status))
    refused = decide(jobs[0], JobDispatched(event_id="d", job_id="job1", assignments={}), later)
    seen.add((JobStatus.NOT_STARTED, "job.dispatched", refused.job.status))
    declared = {(s, t, target) for (s, t), rule in TABLE.items() for target in rule.targets}
    assert declared <= seen, sorted(declared - seen)


def test_readme_diagram_is_generated_from_the_table() -> None:
    text = README.read_text()
    match = re.search(
        r"<!-- state-diagram:start -->\n```mermaid\n(.*?)\n```\n"
        r"<!-- state-diagram:end -->",
        text,
        re.S,
    )
    assert match, "README lacks the generated state diagram block"
    assert match.group(1) == mermaid(), "run: python -m orchestrator.core.diagram --write"
