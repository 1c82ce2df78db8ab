"""The server hears of clients gone (``MembershipChanged``) while its job goes on."""

from __future__ import annotations

from datetime import timedelta

from orchestrator.core import (
    CancelRequested,
    DeadlineExpired,
    JobDispatched,
    JobStatus,
    MembershipChanged,
    decide,
)
from tests.core.scenarios import T0, Emitter, dispatched, new_job, spec


def membership(commands: tuple[object, ...]) -> list[MembershipChanged]:
    return [c for c in commands if isinstance(c, MembershipChanged)]


def test_a_lost_client_is_announced_to_the_server_when_the_job_goes_on() -> None:
    job = dispatched(new_job(spec(3, min_clients=2)))
    lost = decide(job, [DeadlineExpired(event_id="h", job_id=job.id, kind="heartbeat",
                                        participant="client-1")], T0 + timedelta(seconds=10))
    assert lost.job.status is JobStatus.IN_PROGRESS
    [told] = membership(lost.commands)
    assert (told.participant, told.worker, told.gone) == ("server", "srv", ["client-1"])
    assert told.run_id == job.participants["server"].run_id
    assert "client-1 failed" in told.reason
    again = decide(lost.job, [DeadlineExpired(event_id="h", job_id=job.id, kind="heartbeat",
                                              participant="client-1")],
                   T0 + timedelta(seconds=11))
    assert not membership(again.commands), "a client is announced gone once"


def test_a_failed_or_stopped_client_is_announced_too() -> None:
    job = dispatched(new_job(spec(3, min_clients=1)))
    failed = decide(job, [Emitter(job, "client-0").failed(), Emitter(job, "client-2").stopped()],
                    T0)
    assert [m.gone for m in membership(failed.commands)] == [["client-0"], ["client-2"]]


def test_clients_skipped_at_dispatch_are_announced_after_the_start_commands() -> None:
    job = new_job(spec(3, min_clients=2))
    d = decide(job, [JobDispatched(event_id="d", job_id=job.id,
                                   assignments={"server": "a", "client-0": "b",
                                                "client-2": "c"})], T0)
    kinds = [type(c).__name__ for c in d.commands]
    assert kinds == ["StartParticipant"] * 3 + ["MembershipChanged"]
    assert membership(d.commands)[0].gone == ["client-1"]


def test_nothing_is_announced_when_the_job_ends_or_is_cancelling() -> None:
    job = dispatched(new_job(spec(2)))  # every client required
    ended = decide(job, [Emitter(job, "client-0").failed()], T0)
    assert ended.job.status is JobStatus.FINISHED_WITH_ERROR
    assert not membership(ended.commands)
    cancelling = decide(dispatched(new_job(spec(2, min_clients=0))),
                        [CancelRequested(event_id="c", job_id=job.id)], T0).job
    stopped = decide(cancelling, [Emitter(cancelling, "client-0").stopped()], T0)
    assert not membership(stopped.commands)
