"""The rules of ``decide``, one behaviour per test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from orchestrator.core import (
    CancelRequested,
    DeadlineExpired,
    ErrorCode,
    JobDispatched,
    JobSpec,
    JobStatus,
    ParticipantState,
    Phase,
    StartParticipant,
    StopParticipant,
    deadlines,
    decide,
)
from tests.core.scenarios import T0, Emitter, dispatched, new_job, run, spec


def test_dispatch_assigns_every_participant_and_emits_start_commands() -> None:
    job = new_job()
    d = decide(
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
    d = decide(
        job,
        JobDispatched(event_id="d", job_id=job.id, assignments={"server": "a", "client-0": "b"}),
        T0,
    )
    assert not d.changed and d.reason.startswith("refused") and d.job is job


def test_dispatch_skips_unavailable_clients_when_min_clients_allows() -> None:
    job = new_job(spec(3, min_clients=2))
    d = decide(
        job,
        JobDispatched(
            event_id="d",
            job_id=job.id,
            assignments={"server": "a", "client-0": "b", "client-2": "c"},
        ),
        T0,
    )
    assert d.job.participants["client-1"].state is ParticipantState.SKIPPED
    assert len(d.commands) == 3


def test_forged_participant_is_refused() -> None:
    job = dispatched()
    e = Emitter(job, "server")
    forged = e.finished().model_copy(update={"worker": "intruder"})
    d = decide(job, forged, T0)
    assert not d.changed and "belongs to worker srv" in d.reason
    stranger = e.finished().model_copy(update={"participant": "client-9"})
    assert "not a participant" in decide(job, stranger, T0).reason


def test_cancel_wins_over_a_late_success() -> None:
    job = dispatched()
    job = decide(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    assert job.phase is Phase.CANCELLING
    srv = Emitter(job, "server")
    job, _ = run(job, [srv.finished()])
    assert job.status is JobStatus.IN_PROGRESS  # still waiting for the clients to stop
    job, _ = run(job, [Emitter(job, "client-0").stopped(), Emitter(job, "client-1").stopped()])
    assert job.status is JobStatus.FINISHED_CANCELLED


def test_success_first_then_cancel_leaves_success() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").finished()])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    d = decide(job, CancelRequested(event_id="c", job_id=job.id), T0)
    assert d.job.status is JobStatus.FINISHED_SUCCESSFULLY and not d.changed


def test_cancel_sends_stop_to_active_participants_and_grace_ends_it() -> None:
    job = dispatched()
    d = decide(job, CancelRequested(event_id="c", job_id=job.id), T0)
    stops = [c for c in d.commands if isinstance(c, StopParticipant)]
    assert {c.participant for c in stops} == {"server", "client-0", "client-1"}
    grace = next(x for x in deadlines(d.job) if x.kind == "cancel_grace")
    assert grace.at == T0 + timedelta(seconds=5)
    early = decide(
        d.job,
        DeadlineExpired(event_id="g", job_id=job.id, kind="cancel_grace"),
        T0 + timedelta(seconds=1),
    )
    assert early.job.status is JobStatus.IN_PROGRESS and "not due" in early.reason
    late = decide(
        d.job, DeadlineExpired(event_id="g", job_id=job.id, kind="cancel_grace"), grace.at
    )
    assert late.job.status is JobStatus.FINISHED_CANCELLED


def test_cancel_before_dispatch() -> None:
    d = decide(new_job(), CancelRequested(event_id="c", job_id="job1"), T0)
    assert d.job.status is JobStatus.FINISHED_CANCELLED and not d.commands


def test_success_waits_for_the_announced_final_checkpoint() -> None:
    job = dispatched()
    srv = Emitter(job, "server")
    final = srv.checkpoint(3, final=True)
    job, _ = run(job, [srv.finished(final_checkpoint=final.key)])  # type: ignore[union-attr]
    assert job.status is JobStatus.IN_PROGRESS and job.phase is Phase.FINALIZING
    job, decisions = run(job, [final])
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert decisions[0].checkpoints[0].key == final.key  # type: ignore[union-attr]
    assert job.final_checkpoint is not None and job.final_checkpoint.round == 3


def test_missing_final_checkpoint_fails_at_the_finalize_deadline() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").finished(final_checkpoint="never/written")])
    at = next(d.at for d in deadlines(job) if d.kind == "finalize")
    d = decide(job, DeadlineExpired(event_id="f", job_id=job.id, kind="finalize"), at)
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
        d = decide(
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
    d = decide(
        job,
        DeadlineExpired(event_id="h", job_id=job.id, kind="heartbeat", participant="client-0"),
        T0 + timedelta(seconds=11),
    )
    assert not d.changed and "not due" in d.reason


def test_a_stale_duplicate_does_not_extend_liveness() -> None:
    job = dispatched()
    hb = Emitter(job, "client-0").heartbeat()
    job, _ = run(job, [hb], T0 + timedelta(seconds=1))
    again = decide(job, hb, T0 + timedelta(seconds=8))
    assert not again.changed
    assert job.participants["client-0"].last_seen == T0 + timedelta(seconds=1)


def test_start_deadline_gives_cannot_schedule() -> None:
    job = new_job()
    d = decide(
        job, DeadlineExpired(event_id="s", job_id=job.id, kind="start"), T0 + timedelta(seconds=30)
    )
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.CANNOT_SCHEDULE


def test_round_timeout() -> None:
    job = dispatched()
    job, _ = run(job, [Emitter(job, "server").round_started(1)])
    at = next(x.at for x in deadlines(job) if x.kind == "round")
    d = decide(job, DeadlineExpired(event_id="r", job_id=job.id, kind="round"), at)
    assert d.job.status is JobStatus.FINISHED_WITH_ERROR
    assert d.job.error is not None and d.job.error.code is ErrorCode.TIMED_OUT


def test_metrics_after_the_job_finished_are_still_recorded() -> None:
    job = dispatched()
    c0 = Emitter(job, "client-0")
    job, _ = run(job, [Emitter(job, "server").finished()])
    d = decide(job, c0.metrics(2, loss=0.5), T0)
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
