"""The rules of ``decide``, one behaviour per test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from orchestrator.core import (
    CancelRequested,
    DeadlineExpired,
    ErrorCode,
    Event,
    Job,
    JobDispatched,
    JobSpec,
    JobStatus,
    Outcome,
    ParticipantState,
    Phase,
    StartParticipant,
    StopParticipant,
    deadlines,
    decide,
)
from orchestrator.core import new_job as core_new_job
from tests.core.scenarios import T0, Emitter, decide_one, dispatched, new_job, run, spec


def test_dispatch_assigns_every_participant_and_emits_start_commands() -> None:
    job = new_job()
    d = decide_one(
        job,
        JobDispatched(
            event_id="d",
            job_id=job.id,
            assignments={"server": "a", "client-0": "b", "client-1": "c"},
        ),
        T0,
    )
    assert d.job.status is JobStatus.IN_PROGRESS and d.job.phase is Phase.STARTING
    starts = [c for c in d.commands if isinstance(c, StartParticipant)]
    assert {(c.participant, c.worker, c.run_id) for c in starts} == {
        ("server", "srv", "a"),
        ("client-0", "cli0", "b"),
        ("client-1", "cli1", "c"),
    }
    assert all(c.peers == ["server", "client-0", "client-1"] for c in starts)
    assert d.job.history[-1].from_status is JobStatus.NOT_STARTED
    assert d.job.history[-1].event_id == "d"


def test_dispatch_with_too_few_clients_is_refused_and_changes_nothing() -> None:
    job = new_job(spec(3, min_clients=2))
    d = decide_one(
        job,
        JobDispatched(event_id="d", job_id=job.id, assignments={"server": "a", "client-0": "b"}),
        T0,
    )
    assert not d.changed and d.job is job and d.reason == ""
    (outcome,) = d.outcomes
    assert not outcome.applied and outcome.reason.startswith("refused")
    assert "1 clients, 2 required" in outcome.reason


def test_dispatch_skips_unavailable_clients_when_min_clients_allows() -> None:
    job = new_job(spec(3, min_clients=2))
    d = decide_one(
        job,
        JobDispatched(
            event_id="d",
            job_id=job.id,
            assignments={"server": "a", "client-0": "b", "client-2": "c"},
        ),
        T0,
    )
    assert d.job.participants["client-1"].state is ParticipantState.SKIPPED
    assert len([c for c in d.commands if isinstance(c, StartParticipant)]) == 3


def test_forged_participant_is_refused() -> None:
    job = dispatched()
    e = Emitter(job, "server")
    forged = e.finished().model_copy(update={"worker": "intruder"})
    d = decide_one(job, forged, T0)
    assert not d.changed and "belongs to worker srv" in d.outcomes[0].reason
    stranger = e.finished().model_copy(update={"participant": "client-9"})
    assert "not a participant" in decide_one(job, stranger, T0).outcomes[0].reason


def test_cancel_wins_over_a_late_success() -> None:
    job = dispatched()
    job = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    assert job.phase is Phase.CANCELLING
    srv = Emitter(job, "server")
    job, _ = run(job, [srv.finished()])
    assert job.status is JobStatus.IN_PROGRESS  # still waiting for the clients to stop
    job, _ = run(job, [Emitter(job, "client-0").stopped(), Emitter(job, "client-1").stopped()])
    assert job.status is JobStatus.FINISHED_CANCELLED


def _all_finish(job: Job) -> list[Event]:
    """The server's finish, then its clients'."""
    return [Emitter(job, p).finished() for p in ("server", *(c.id for c in job.clients))]


def test_success_first_then_cancel_leaves_success() -> None:
    job = dispatched()
    job, _ = run(job, _all_finish(job))
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    d = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0)
    assert d.job.status is JobStatus.FINISHED_SUCCESSFULLY and not d.changed


def test_cancel_sends_stop_to_active_participants_and_grace_ends_it() -> None:
    job = dispatched()
    d = decide_one(job, CancelRequested(event_id="c", job_id=job.id), T0)
    stops = [c for c in d.commands if isinstance(c, StopParticipant)]
    assert {c.participant for c in stops} == {"server", "client-0", "client-1"}
    grace = next(x for x in deadlines(d.job) if x.kind == "cancel_grace")
    assert grace.at == T0 + timedelta(seconds=5)
    early = decide_one(
        d.job,
        DeadlineExpired(event_id="g", job_id=job.id, kind="cancel_grace"),
        T0 + timedelta(seconds=1),
    )
    assert early.job.status is JobStatus.IN_PROGRESS and "not due" in early.outcomes[0].reason
    late = decide_one(
        d.job, DeadlineExpired(event_id="g", job_id=job.id, kind="cancel_grace"), grace.at
    )
    assert late.job.status is JobStatus.FINISHED_CANCELLED


def test_cancel_before_dispatch() -> None:
    d = decide_one(new_job(), CancelRequested(event_id="c", job_id="job1"), T0)
    assert d.job.status is JobStatus.FINISHED_CANCELLED and not d.commands


def test_success_waits_for_the_announced_final_checkpoint() -> None:
    job = dispatched()
    srv = Emitter(job, "server")
    final = srv.checkpoint(3, final=True)
    job, _ = run(job, [srv.finished(final_checkpoint=final.key),  # type: ignore[union-attr]
                       *_all_finish(job)[1:]])
    assert job.status is JobStatus.IN_PROGRESS and job.phase is Phase.FINALIZING
    job, decisions = run(job, [final])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert decisions[0].checkpoints[0].key == final.key  # type: ignore[union-attr]
    assert job.final_checkpoint is not None and job.final_checkpoint.round == 3


def test_missing_final_checkpoint_fails_at_the_finalize_deadline() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").finished(final_checkpoint="never/written")])
    at = next(d.at for d in deadlines(job) if d.kind == "finalize")
    d = decide_one(job, DeadlineExpired(event_id="f", job_id=job.id, kind="finalize"), at)
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.CHECKPOINT_FAILED


def test_lost_client_fails_job_unless_min_clients_still_holds() -> None:
    for min_clients, expected in ((1, JobStatus.IN_PROGRESS), (2, JobStatus.FINISHED_WITH_ERROR)):
        job = dispatched(new_job(spec(2, min_clients=min_clients)))
        job, _ = run(
            job,
            [Emitter(job, "server").heartbeat(), Emitter(job, "client-1").heartbeat()],
            T0 + timedelta(seconds=5),
        )
        lost_at = T0 + timedelta(seconds=10)
        d = decide_one(
            job,
            DeadlineExpired(event_id="h", job_id=job.id, kind="heartbeat", participant="client-0"),
            lost_at,
        )
        assert d.job.status is expected
        assert d.job.participants["client-0"].state is ParticipantState.FAILED
        if expected is JobStatus.FINISHED_WITH_ERROR:
            assert d.job.error is not None
            assert d.job.error.code is ErrorCode.WORKER_LOST
            assert d.job.error.participant == "client-0"
            assert {c.participant for c in d.commands} == {"server", "client-1"}


def test_heartbeat_deadline_not_due_after_a_fresh_heartbeat() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "client-0").heartbeat()], T0 + timedelta(seconds=9))
    d = decide_one(
        job,
        DeadlineExpired(event_id="h", job_id=job.id, kind="heartbeat", participant="client-0"),
        T0 + timedelta(seconds=11),
    )
    assert not d.changed and "not due" in d.outcomes[0].reason


def test_a_stale_duplicate_does_not_extend_liveness() -> None:
    job = dispatched()
    hb = Emitter(job, "client-0").heartbeat()
    job, _ = run(job, [hb], T0 + timedelta(seconds=1))
    again = decide_one(job, hb, T0 + timedelta(seconds=8))
    assert not again.changed
    assert job.participants["client-0"].last_seen == T0 + timedelta(seconds=1)


def test_start_deadline_gives_cannot_schedule() -> None:
    job = new_job()
    d = decide_one(
        job, DeadlineExpired(event_id="s", job_id=job.id, kind="start"), T0 + timedelta(seconds=30)
    )
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.CANNOT_SCHEDULE


def test_round_timeout() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").round_started(1)])
    at = next(x.at for x in deadlines(job) if x.kind == "round")
    d = decide_one(job, DeadlineExpired(event_id="r", job_id=job.id, kind="round"), at)
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.TIMED_OUT


def test_metrics_after_the_job_finished_are_still_recorded() -> None:
    job = dispatched()
    c0 = Emitter(job, "client-0")
    job, _ = run(job, _all_finish(job))
    d = decide_one(job, c0.metrics(2, loss=0.5), T0)
    assert d.job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert [(m.participant, m.round, m.metrics) for m in d.metrics] == [
        ("client-0", 2, {"loss": 0.5})
    ]


def test_metrics_summary_keeps_the_highest_round() -> None:
    job = dispatched()
    c0 = Emitter(job, "client-0")
    m3, m1 = c0.metrics(3, loss=0.3), c0.metrics(1, loss=0.9)
    job, decisions = run(job, [m3, m1])
    assert job.participants["client-0"].metrics == {"loss": 0.3}
    assert decisions[1].metrics[0].round == 1  # the late one is still recorded


def test_server_failure_fails_the_job_with_its_message() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").failed("diverged at round 2")])
    assert job.status is JobStatus.FINISHED_WITH_ERROR
    assert job.error is not None and job.error.message == "diverged at round 2"
    assert job.error.code is ErrorCode.WORKLOAD_FAILED and job.error.participant == "server"


def test_spec_limits_and_errors() -> None:
    with pytest.raises(ValidationError, match="min_clients=3 exceeds"):
        spec(2, min_clients=3)
    with pytest.raises(ValidationError, match="Extra inputs"):
        JobSpec.model_validate({"workload": "x", "server": {"worker": "s"}, "code": "rm -rf"})
    with pytest.raises(ValueError, match="limit"):
        JobSpec.from_json(b"{" + b" " * 300_000 + b"}")
    with pytest.raises(ValidationError, match="String should match pattern"):
        JobSpec.model_validate({"workload": "x", "server": {"worker": "a b"}})


# --- the batch form ------------------------------------------------------------------------------


def test_new_job_is_queued_with_its_start_deadline_and_submit_history() -> None:
    job = core_new_job("j7", spec(), T0, event_id="submit:1-0")
    assert job.status is JobStatus.NOT_STARTED and job.phase is Phase.QUEUED
    assert job.deadline_at == T0 + timedelta(seconds=30)
    assert [(h.from_status, h.to_status, h.event_id) for h in job.history] == [
        (None, JobStatus.NOT_STARTED, "submit:1-0")
    ]
    assert all(p.state is ParticipantState.PENDING for p in job.participants.values())


def test_an_empty_batch_changes_nothing() -> None:
    job = dispatched()
    d = decide(job, [], T0)
    assert d.job is job and not d.changed and not d.outcomes and not d.applied


def test_a_batch_gives_one_outcome_per_event_in_order_and_one_version() -> None:
    job = new_job()
    srv = Emitter(job, "server")
    early = srv.started()  # before dispatch: refused
    events = [
        early,
        JobDispatched(event_id="d", job_id=job.id,
                      assignments={p: f"r-{p}" for p in job.participants}),
        srv.started(),
        srv.round_started(1),
        srv.heartbeat(),
    ]
    d = decide(job, events, T0 + timedelta(seconds=1))
    assert [o.event_id for o in d.outcomes] == [e.event_id for e in events]
    assert [o.applied for o in d.outcomes] == [False, True, True, True, True]
    assert d.outcomes[0].reason.startswith("refused: participant.started while job is")
    assert d.job.version == job.version + 1  # one compare-and-set for the whole batch
    assert d.job.status is JobStatus.IN_PROGRESS and d.job.phase is Phase.RUNNING
    assert [(h.from_status, h.to_status, h.event_id) for h in d.history] == [
        (JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS, "d")
    ]
    assert d.job.history == [*job.history, *d.history]
    assert d.reason == d.outcomes[-1].reason  # the last applied event's reason


def test_reason_is_the_last_applied_events_not_a_later_refusal() -> None:
    job = dispatched()
    srv = Emitter(job, "server")
    d = decide(job, [srv.round_started(1), JobDispatched(
        event_id="again", job_id=job.id, assignments={"server": "x"})], T0)
    assert d.reason == "round 1 started"
    assert d.outcomes[1].reason.startswith("refused: job.dispatched while job is IN_PROGRESS")


def test_an_event_for_another_job_is_refused_alone() -> None:
    job = dispatched()
    stray = CancelRequested(event_id="x", job_id="other")
    beat = Emitter(job, "client-0").heartbeat()
    d = decide(job, [stray, beat], T0)
    assert d.outcomes[0] == Outcome("x", "other", False,
                                    "refused: event for job other applied to job1")
    assert d.outcomes[1].applied and d.job.phase is not Phase.CANCELLING


def test_a_duplicate_inside_one_batch_applies_once() -> None:
    job = dispatched()
    beat = Emitter(job, "client-0").heartbeat()
    d = decide(job, [beat, beat], T0 + timedelta(seconds=1))
    assert [o.applied for o in d.outcomes] == [True, False]
    assert d.outcomes[1].reason.startswith("no change")


def test_a_finish_as_the_first_word_finishes_the_participant() -> None:
    """A participant whose ``started`` is late (or lost) and whose first event is its last one
    ends in that state, not in STARTED (which would leave the job waiting for a deadline)."""
    job = dispatched()
    for word, state in (("finished", ParticipantState.FINISHED),
                        ("failed", ParticipantState.FAILED),
                        ("stopped", ParticipantState.STOPPED)):
        last_word = getattr(Emitter(job, "client-0"), word)()
        after = decide_one(job, last_word, T0).job
        assert after.participants["client-0"].state is state
    job, _ = run(job, _all_finish(job)[1:])  # the clients' finishes as first words
    d = decide_one(job, Emitter(job, "server").finished(), T0)
    assert d.job.status is JobStatus.FINISHED_SUCCESSFULLY


def test_cancel_then_all_stopped_in_one_batch_ends_cancelled_once() -> None:
    job = dispatched()
    cancel = CancelRequested(event_id="c", job_id=job.id)
    stops = [Emitter(job, p).stopped() for p in job.participants]
    d = decide(job, [cancel, *stops, cancel], T0)
    assert d.job.status is JobStatus.FINISHED_CANCELLED
    assert [h.to_status for h in d.history] == [JobStatus.FINISHED_CANCELLED]
    assert d.history[0].event_id == stops[-1].event_id
    assert {c.participant for c in d.commands if isinstance(c, StopParticipant)} == set(
        job.participants)
    assert d.outcomes[-1].reason.startswith("ignored")


def test_a_finished_server_waits_for_its_clients_then_the_job_succeeds() -> None:
    """The server's end is the result, but the job ends once its clients have ended too (they
    got the server's last message): their last events are in, and every participant shows
    how it ended."""
    job = dispatched()
    job, decisions = run(job, [Emitter(job, "server").finished(),
                               Emitter(job, "client-0").finished()])
    assert job.status is JobStatus.IN_PROGRESS and job.phase is Phase.FINALIZING
    assert not any(isinstance(c, StopParticipant) for d in decisions for c in d.commands)
    job, _ = run(job, [Emitter(job, "client-1").failed("gone after the last round")])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY and job.error is None
    # Each status change records the rule that made it.
    assert [h.rule for h in job.history] == [
        "submission", "dispatch (refused if too few clients)",
        "joint: server finished, final checkpoint recorded, clients done"]
    assert {p.id: p.state for p in job.participants.values()} == {
        "server": ParticipantState.FINISHED, "client-0": ParticipantState.FINISHED,
        "client-1": ParticipantState.FAILED}


def test_clients_still_running_at_the_finalize_deadline_are_stopped_and_the_job_succeeds(
        ) -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").finished()])
    at = next(d.at for d in deadlines(job) if d.kind == "finalize")
    d = decide_one(job, DeadlineExpired(event_id="f", job_id=job.id, kind="finalize"), at)
    assert d.job.status is JobStatus.FINISHED_SUCCESSFULLY and d.job.error is None
    assert "client-0, client-1 still running, stopped" in d.job.history[-1].reason
    assert d.job.history[-1].rule == "the finalize deadline"
    stops = {c.participant for c in d.commands if isinstance(c, StopParticipant)}
    assert stops == {"client-0", "client-1"}
