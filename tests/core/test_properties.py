"""Property tests: order, duplicates, interleavings and batching don't change a job's outcome.

A *run* is what real participants of one job emit: each participant's events in its own
order (seq grows). The daemon may see them interleaved across participants, reordered
(events travel on sharded streams and through several daemon replicas), duplicated
(at-least-once delivery, producer retries), and grouped into batches of any size (one
``decide`` per job per batch read). For every *consistent* run — one a real job can
produce — the final status must not depend on any of that.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import (
    RULES,
    TERMINAL,
    CancelRequested,
    Command,
    DeadlineExpired,
    Decision,
    Event,
    Job,
    JobStatus,
    Outcome,
    RoundMetrics,
    decide,
    due,
)
from orchestrator.core.events import DeadlineKind
from orchestrator.core.joint import first_rule
from tests.core.scenarios import T0, Emitter, decide_one, dispatched, joint_of, new_job, spec

OUTCOMES = ("finish", "fail", "silent", "stop")
KINDS: tuple[DeadlineKind, ...] = ("start", "heartbeat", "round", "job", "cancel_grace",
                                   "finalize")
Run = tuple[Job, list[Event], JobStatus]


@st.composite
def runs(draw: st.DrawFn) -> Run:
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


def interventions(job: Job) -> list[Event]:
    """What the daemon and the submitter add to a run: a cancel and every deadline."""
    out: list[Event] = [CancelRequested(event_id="cxl", job_id=job.id)]
    out += [DeadlineExpired(event_id=f"dl-{kind}-{pid}", job_id=job.id, kind=kind,
                            participant=pid if kind == "heartbeat" else None)
            for kind in KINDS for pid in job.participants
            if kind == "heartbeat" or pid == "server"]
    return out


@st.composite
def deliveries(draw: st.DrawFn, events: list[Event], extra: list[Event] | None = None
               ) -> list[Event]:
    """The run as a daemon may receive it: shuffled, with duplicates (and some ``extra``)."""
    dupes = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    added = draw(st.lists(st.sampled_from(extra), max_size=3)) if extra else []
    return draw(st.permutations([*events, *dupes, *added]))


@st.composite
def chunked(draw: st.DrawFn, events: list[Event]) -> list[list[Event]]:
    """``events`` in order, cut into batches of random sizes (some possibly empty)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(events)), max_size=len(events))))
    bounds = [0, *cuts, len(events)]
    return [events[a:b] for a, b in pairwise(bounds)]


def settle(job: Job, batches: list[list[Event]], now: datetime | None = None) -> Job:
    """Apply the batches (1 ms apart unless ``now``), then let every deadline expire."""
    at = T0
    for batch in batches:
        at += timedelta(milliseconds=1)
        job = decide(job, batch, now or at).job
    later = (now or at) + timedelta(days=30)
    for step in range(50):
        pending = due(job, later)
        if not pending or job.status in TERMINAL:
            break
        d = pending[0]
        job = decide_one(
            job,
            DeadlineExpired(
                event_id=f"dl{step}", job_id=job.id, kind=d.kind, participant=d.participant
            ),
            later,
        ).job
    return job


def singles(events: list[Event]) -> list[list[Event]]:
    return [[e] for e in events]


# --- order and duplicates ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(data=st.data(), run=runs())
def test_any_order_and_duplication_gives_the_same_status(data: st.DataObject, run: Run) -> None:
    job, events, expected = run
    assert settle(job, singles(events)).status is expected
    mixed = data.draw(deliveries(events))
    assert settle(job, singles(mixed)).status is expected
    assert settle(job, data.draw(chunked(mixed))).status is expected
    assert settle(job, [mixed]).status is expected


@settings(max_examples=100, deadline=None)
@given(data=st.data(), run=runs())
def test_finished_never_changes(data: st.DataObject, run: Run) -> None:
    job, events, _ = run
    order = data.draw(deliveries(events, interventions(job)))
    now = T0
    terminal: JobStatus | None = None
    n_history = 0
    for event in order:
        now += timedelta(seconds=data.draw(st.integers(0, 20)), milliseconds=1)
        d = decide_one(job, event, now)
        job = d.job
        if terminal is not None:
            assert job.status is terminal and not d.history
        elif job.status in TERMINAL:
            terminal = job.status
            n_history = len(job.history)
    if terminal is not None:
        assert len(job.history) == n_history  # no transition after the terminal one


@settings(max_examples=100, deadline=None)
@given(run=runs(), index=st.integers(0, 10_000))
def test_a_resent_event_changes_nothing(run: Run, index: int) -> None:
    job, events, _ = run
    now = T0
    for event in events:
        now += timedelta(milliseconds=1)
        job = decide_one(job, event, now).job
    again = decide_one(job, events[index % len(events)], now + timedelta(seconds=1))
    assert not again.changed and not again.history and not again.commands
    assert again.job is job
    assert not again.outcomes[0].applied or again.metrics or again.checkpoints  # rows only
    whole = decide(job, events, now + timedelta(seconds=2))  # the run resent as one batch
    assert not whole.changed and whole.job is job and not whole.commands


@settings(max_examples=100, deadline=None)
@given(data=st.data(), run=runs())
def test_metrics_records_are_keyed_and_complete(data: st.DataObject, run: Run) -> None:
    """Whatever the order and batching, every (participant, round) metric reaches the
    records, and rows with the same key carry the same values (upserts are harmless)."""
    job, events, _ = run
    batches = data.draw(chunked(data.draw(deliveries(events))))
    rows: dict[tuple[str, int], dict[str, float]] = {}
    now = T0
    for batch in batches:
        now += timedelta(milliseconds=1)
        d = decide(job, batch, now)
        job = d.job
        for m in d.metrics:
            assert m.job_id == job.id
            assert rows.setdefault((m.participant, m.round), m.metrics) == m.metrics
    sent = {(e.participant, e.round): e.metrics for e in events if isinstance(e, RoundMetrics)}
    assert rows == sent


# --- batches -------------------------------------------------------------------------------------


def fold(job: Job, batches: list[list[Event]], now: datetime) -> tuple[Job, dict[str, Any]]:
    """Decide the batches in turn at one ``now``; the job and everything produced."""
    produced: dict[str, list[Any]] = {"commands": [], "metrics": [], "checkpoints": [],
                                      "outcomes": [], "history": []}
    for batch in batches:
        d = decide(job, batch, now)
        for name, out in produced.items():
            out.extend(getattr(d, name))
        assert d.job.history == [*job.history, *d.history]
        job = d.job
    return job, produced


def comparable(job: Job) -> Job:
    """What must agree whatever the batching: everything but the write counter."""
    return replace(job, version=0)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), run=runs(),
       offset_s=st.sampled_from([0, 5, 11, 35, 70, 700, 86_400]))
def test_batching_does_not_change_the_result(data: st.DataObject, run: Run,
                                             offset_s: int) -> None:
    """One batch, one event per batch, or random chunks: the same job (status, phase,
    participants, checkpoints, deadline, history), the same commands, rows and outcomes."""
    job, events, _ = run
    order = data.draw(deliveries(events, interventions(job)))
    now = T0 + timedelta(seconds=offset_s)  # so that some deadlines are due
    one, one_out = fold(job, [order], now)
    each, each_out = fold(job, singles(order), now)
    some, some_out = fold(job, data.draw(chunked(order)), now)
    assert comparable(one) == comparable(each) == comparable(some)
    assert one_out == each_out == some_out
    assert one.version == job.version + (1 if one is not job else 0)
    assert [o.event_id for o in one_out["outcomes"]] == [e.event_id for e in order]


# --- invariants at every step --------------------------------------------------------------------


def check_step(before: Job, events: list[Event], d: Decision) -> None:
    after = d.job
    if len(events) == 1:  # a rule's targets bound where one event can lead
        (event,) = events
        assert after.status in RULES[(before.status, event.type)].targets, (before.status, event)
    if before.status in TERMINAL:
        assert after.status is before.status
    for pid, p in after.participants.items():
        old = before.participants[pid]
        assert p.state.rank >= old.state.rank, (pid, old.state, p.state)
        assert p.state.rank > old.state.rank or p.state is old.state
        assert p.last_seq >= old.last_seq and p.round >= old.round
    if after.status is JobStatus.IN_PROGRESS:  # the status follows from the joint state
        assert first_rule(joint_of(after)).ends is None
    assert (d.job is before) == (not d.changed)
    assert len(d.outcomes) == len(events)
    assert all(isinstance(o, Outcome) for o in d.outcomes)
    assert d.reason == next((o.reason for o in reversed(d.outcomes) if o.applied), "")
    commands: list[Command] = list(d.commands)
    assert len({c.command_id for c in commands}) == len(commands)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), run=runs())
def test_every_step_keeps_the_invariants(data: st.DataObject, run: Run) -> None:
    """Over random deliveries with cancels and deadlines at random times, in random batches:
    no event leads outside its rule's targets, FINISHED stays, participants only move
    forward, an IN_PROGRESS job is never one the joint-state table would end."""
    job, events, _ = run
    batches = data.draw(chunked(data.draw(deliveries(events, interventions(job)))))
    now = T0
    for batch in batches:
        now += timedelta(seconds=data.draw(st.integers(0, 30)))
        d = decide(job, batch, now)
        check_step(job, batch, d)
        job = d.job
