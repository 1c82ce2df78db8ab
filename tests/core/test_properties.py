"""Property tests: order, duplicates and interleavings don't change a job's outcome.

A *run* is what real participants of one job emit: each participant's events in its own
order (seq grows). The daemon may see them interleaved across participants, reordered
(events travel on sharded streams and through several daemon replicas), and duplicated
(at-least-once delivery, producer retries). For every *consistent* run — one a real job can
produce — the final status must not depend on any of that.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import (
    TERMINAL,
    DeadlineExpired,
    Event,
    Job,
    JobStatus,
    decide,
    due,
)
from tests.core.scenarios import T0, Emitter, dispatched, new_job, spec

OUTCOMES = ("finish", "fail", "silent", "stop")


@st.composite
def runs(draw: st.DrawFn) -> tuple[Job, list[Event], JobStatus]:
    clients = draw(st.integers(1, 4))
    min_clients = draw(st.integers(0, clients))
    rounds = draw(st.integers(1, 3))
    job = dispatched(new_job(spec(clients, min_clients=min_clients, rounds=rounds)))
    client_outcomes = [draw(st.sampled_from(OUTCOMES)) for _ in range(clients)]
    healthy = sum(o == "finish" for o in client_outcomes)
    enough = healthy >= min_clients
    # A server cannot finish without enough clients: then it fails or goes silent.
    server_outcome = draw(
        st.sampled_from(("finish", "fail", "silent") if enough else ("fail", "silent"))
    )
    events: list[Event] = []
    for index, outcome in enumerate(client_outcomes):
        e = Emitter(job, f"client-{index}")
        events += [e.started(), e.heartbeat()]
        done = rounds if outcome == "finish" else draw(st.integers(0, rounds))
        for r in range(1, done + 1):
            events += [e.heartbeat(r), e.metrics(r)]
        events += {
            "finish": [e.finished()],
            "fail": [e.failed()],
            "stop": [e.stopped()],
            "silent": [],
        }[outcome]
    srv = Emitter(job, "server")
    events += [srv.started()]
    done = rounds if server_outcome == "finish" else draw(st.integers(0, rounds))
    final_key = None
    for r in range(1, done + 1):
        events += [srv.round_started(r), srv.metrics(r), srv.checkpoint(r)]
    if server_outcome == "finish":
        final = srv.checkpoint(rounds + 1, final=True)
        final_key = final.key  # type: ignore[union-attr]
        events += [final, srv.finished(final_checkpoint=final_key)]
    elif server_outcome == "fail":
        events.append(srv.failed())
    # Expected outcome, from the facts alone.
    if server_outcome == "finish":
        expected = JobStatus.FINISHED_SUCCESSFULLY
    else:
        expected = JobStatus.FINISHED_WITH_ERROR  # failure, lost server, or lost clients
    return job, events, expected


def settle(job: Job, events: list[Event]) -> Job:
    """Apply events in the given order, then let every deadline expire (the reaper)."""
    now = T0
    for event in events:
        now += timedelta(milliseconds=1)
        job = decide(job, event, now).job
    later = now + timedelta(days=30)
    for step in range(50):
        pending = due(job, later)
        if not pending or job.status in TERMINAL:
            break
        d = pending[0]
        job = decide(
            job,
            DeadlineExpired(
                event_id=f"dl{step}", job_id=job.id, kind=d.kind, participant=d.participant
            ),
            later,
        ).job
    return job


@settings(max_examples=300, deadline=None)
@given(data=st.data(), run=runs())
def test_any_order_and_duplication_gives_the_same_status(
    data: st.DataObject, run: tuple[Job, list[Event], JobStatus]
) -> None:
    job, events, expected = run
    in_order = settle(job, events)
    assert in_order.status is expected
    shuffled = data.draw(st.permutations(events))
    dupes = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    mixed = data.draw(st.permutations([*shuffled, *dupes]))
    assert settle(job, mixed).status is expected


@settings(max_examples=200, deadline=None)
@given(data=st.data(), run=runs())
def test_finished_never_changes(
    data: st.DataObject, run: tuple[Job, list[Event], JobStatus]
) -> None:
    job, events, _ = run
    order = data.draw(st.permutations(events))
    now = T0
    terminal: JobStatus | None = None
    for event in order:
        now += timedelta(milliseconds=1)
        job = decide(job, event, now).job
        if terminal is not None:
            assert job.status is terminal
        elif job.status in TERMINAL:
            terminal = job.status
            n_history = len(job.history)
    if terminal is not None:
        assert len(job.history) == n_history  # no transition after the terminal one


@settings(max_examples=200, deadline=None)
@given(run=runs(), index=st.integers(0, 10_000))
def test_a_resent_event_changes_nothing(
    run: tuple[Job, list[Event], JobStatus], index: int
) -> None:
    job, events, _ = run
    now = T0
    for event in events:
        now += timedelta(milliseconds=1)
        job = decide(job, event, now).job
    again = decide(job, events[index % len(events)], now + timedelta(seconds=1))
    assert not again.changed
    assert again.job == job
    assert not again.commands


@settings(max_examples=100, deadline=None)
@given(data=st.data(), run=runs())
def test_metrics_records_are_keyed_and_complete(
    data: st.DataObject, run: tuple[Job, list[Event], JobStatus]
) -> None:
    """Whatever the order, every (participant, round) metric reaches the records."""
    job, events, _ = run
    order = data.draw(st.permutations(events))
    rows: dict[tuple[str, int], dict[str, float]] = {}
    now = T0
    for event in order:
        now += timedelta(milliseconds=1)
        d = decide(job, event, now)
        job = d.job
        for m in d.metrics:
            rows[(m.participant, m.round)] = m.metrics
    sent = {
        (e.participant, e.round): e.metrics
        for e in events  # type: ignore[union-attr]
        if e.type == "round.metrics"
    }
    assert rows == sent
