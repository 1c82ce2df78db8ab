"""Deadlines are derived from the job's own state; the job stores the earliest."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import (
    CancelRequested,
    Job,
    Phase,
    deadlines,
    decide,
    due,
    next_deadline_at,
)
from tests.core.scenarios import T0, Emitter, decide_one, dispatched, new_job, run, spec
from tests.core.test_properties import Run, chunked, deliveries, interventions, runs


def check_deadlines(job: Job) -> None:
    armed = deadlines(job)
    assert armed == sorted(armed, key=lambda d: (d.at, d.kind, d.participant or ""))
    assert next_deadline_at(job) == (min(d.at for d in armed) if armed else None)
    assert job.deadline_at == next_deadline_at(job)
    if job.is_terminal:
        assert armed == []


@settings(max_examples=100, deadline=None)
@given(data=st.data(), run=runs())
def test_the_stored_deadline_is_the_earliest_armed_one(data: st.DataObject, run: Run) -> None:
    job, events, _ = run
    check_deadlines(job)
    batches = data.draw(chunked(data.draw(deliveries(events, interventions(job)))))
    now = T0
    for batch in batches:
        now += timedelta(seconds=data.draw(st.integers(0, 30)))
        job = decide(job, batch, now).job
        check_deadlines(job)
        assert due(job, now) == [d for d in deadlines(job) if d.at <= now]


def kinds(job: Job) -> list[tuple[str, str | None]]:
    return sorted((d.kind, d.participant) for d in deadlines(job))


def test_which_deadlines_are_armed_in_each_phase() -> None:
    job = new_job()
    assert kinds(job) == [("start", None)]
    assert job.deadline_at == T0 + timedelta(seconds=30)
    job = dispatched(job)
    beats = [("heartbeat", p) for p in ("client-0", "client-1", "server")]
    assert kinds(job) == [*beats, ("job", None)]
    srv = Emitter(job, "server")
    running, _ = run(job, [srv.round_started(1)])
    assert running.phase is Phase.RUNNING
    assert kinds(running) == [*beats, ("job", None), ("round", None)]
    finalizing, _ = run(running, [srv.finished(final_checkpoint="k")])
    assert finalizing.phase is Phase.FINALIZING
    assert kinds(finalizing) == [("finalize", None), *beats[:2], ("job", None)]
    cancelling = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    assert kinds(cancelling) == [("cancel_grace", None)]
    done, _ = run(job, [Emitter(job, "server").failed()])
    assert done.is_terminal and kinds(done) == [] and done.deadline_at is None


def test_disabled_timeouts_arm_nothing() -> None:
    job = dispatched(new_job(spec(1, round_s=None, job_s=None)))
    job, _ = run(job, [Emitter(job, "server").round_started(1)])
    assert kinds(job) == [("heartbeat", "client-0"), ("heartbeat", "server")]


def test_a_heartbeat_moves_its_deadline_and_the_stored_earliest() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, p).heartbeat() for p in job.participants],
                 T0 + timedelta(seconds=4))
    assert job.deadline_at == T0 + timedelta(seconds=14)
    assert due(job, T0 + timedelta(seconds=13)) == []
    assert {d.participant for d in due(job, T0 + timedelta(seconds=14))} == set(
        job.participants)
