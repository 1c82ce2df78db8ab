"""The hot-path shortcuts made in the core for the daemon equal their reference definitions.

* ``next_deadline_at(job)`` is computed directly; it must equal ``deadlines(job)[0].at``.
* ``evolve`` replaces ``dataclasses.replace``; the results must be equal, frozen records.
* ``decide``'s field-wise change detection must agree with comparing whole jobs.
* ``command_id`` always yields a valid name, deterministically.
* ``decide``'s liveness shortcut (started, heartbeat and metrics events of a running
  participant) returns exactly what the transitions table's rules return
  (``decide_by_rules``), on every job a run reaches and on jobs with arbitrary participant
  states, phases and rounds; and a change it marks ``quiet`` is one no watcher is told about.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from orchestrator.core import (
    CancelRequested,
    DeadlineExpired,
    Decision,
    Event,
    Heartbeat,
    Job,
    ParticipantStarted,
    ParticipantState,
    Phase,
    RoundMetrics,
    deadlines,
    decide,
    is_name,
)
from orchestrator.core._types import Name, evolve
from orchestrator.core.deadlines import next_deadline_at
from orchestrator.core.decide import TransitionError, _liveness, command_id, decide_by_rules
from orchestrator.daemon.effects import worth_announcing
from tests.core.scenarios import T0, dispatched, new_job, spec
from tests.core.test_properties import runs

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # used with fullmatch


def reference_next(job: Job) -> object:
    armed = deadlines(job)
    return armed[0].at if armed else None


@settings(max_examples=80, deadline=None)
@given(data=st.data(), run=runs())
def test_fast_paths_agree_with_their_definitions(data: st.DataObject,
                                                 run: tuple[Job, list[Event], object]) -> None:
    job, events, _ = run
    extra: list[Event] = [CancelRequested(event_id="cxl", job_id=job.id)]
    extra += [DeadlineExpired(event_id=f"dl-{k}", job_id=job.id, kind=k)
              for k in ("job", "round", "cancel_grace", "finalize")]
    order = data.draw(st.permutations([*events, *data.draw(st.lists(st.sampled_from(extra),
                                                                    max_size=2))]))
    for i, event in enumerate(order):
        now = T0 + timedelta(seconds=data.draw(st.integers(0, 4000))) + timedelta(microseconds=i)
        decision = decide(job, event, now)
        after = decision.job
        assert next_deadline_at(after) == reference_next(after)
        assert after.deadline_at == reference_next(after)
        # Whole-job comparison (ignoring the stamp written only on change) agrees.
        stripped = dataclasses.replace(after, updated_at=job.updated_at)
        assert decision.changed == (stripped != job), (event, decision.reason)
        job = after


def test_evolve_equals_replace() -> None:
    job = Job.new("j", spec(), T0)
    changes = {"round": 3, "version": 7}
    copy = evolve(job, changes)
    assert copy == dataclasses.replace(job, **changes)
    assert type(copy) is Job, "a Job, not the writable twin it was built in"
    assert job.round == 0, "the original is untouched"
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.round = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del copy.round  # type: ignore[misc]
    assert evolve(copy, {}) == copy
    p = job.participants["server"]
    moved = evolve(p, {"last_seq": 5})
    assert moved == dataclasses.replace(p, last_seq=5) and type(moved) is type(p)
    with pytest.raises(AttributeError):
        evolve(job, {"no_such_field": 1})
    # Documents of evolved jobs are those of jobs built the slow way.
    assert copy.to_document() == dataclasses.replace(job, **changes).to_document()


@given(st.text(min_size=1, max_size=128), st.sampled_from(["start", "stop"]),
       st.sampled_from(["server", "client-0", "client-999"]))
def test_command_ids_are_valid_deterministic_names(event_id: str, action: str, pid: str) -> None:
    cid = command_id(event_id, action, pid)
    assert NAME.fullmatch(cid)
    assert is_name(cid)
    assert len(cid) <= 128
    assert cid == command_id(event_id, action, pid)
    if NAME.fullmatch(event_id) and len(event_id) + len(action) + len(pid) + 2 <= 128:
        assert cid == f"{event_id}.{action}.{pid}"


# --- the liveness shortcut ---------------------------------------------------------------------


@st.composite
def liveness_events(draw: st.DrawFn, job: Job) -> Event:
    """A started, heartbeat or metrics event: mostly well-formed, sometimes from a stranger."""
    pid = draw(st.sampled_from([*job.participants, "client-99"]))
    right = job.participants[pid].worker if pid in job.participants else "nobody"
    common = {
        "event_id": draw(st.sampled_from(["probe-1", "probe 2/x"])),
        "job_id": job.id,
        "participant": pid,
        "worker": draw(st.sampled_from([right, right, "intruder"])),
        "seq": draw(st.integers(0, 40)),
    }
    kind = draw(st.sampled_from(["started", "heartbeat", "metrics"]))
    if kind == "started":
        return ParticipantStarted(**common)
    if kind == "heartbeat":
        return Heartbeat(round=draw(st.none() | st.integers(0, 4)), **common)
    return RoundMetrics(round=draw(st.integers(0, 4)),
                        metrics=draw(st.sampled_from([{}, {"loss": 0.5}, {"loss": 0.25}])),
                        **common)


def assert_same(job: Job, event: Event, now: datetime) -> Decision:
    try:
        slow = decide_by_rules(job, event, now)
    except TransitionError:  # an arbitrary state the table forbids: decide must refuse too
        with pytest.raises(TransitionError):
            decide(job, event, now)
        return Decision(job, False, "refused by the table")
    fast = decide(job, event, now)
    assert fast._replace(quiet=False) == slow, (event, fast.reason, slow.reason)
    assert fast.job.to_document() == slow.job.to_document()
    if fast.changed and fast.quiet:
        assert not worth_announcing(job, fast.job), event
    return fast


@settings(max_examples=150, deadline=None)
@given(data=st.data(), run=runs())
def test_liveness_shortcut_equals_the_rules_on_reachable_jobs(
        data: st.DataObject, run: tuple[Job, list[Event], object]) -> None:
    job, events, _ = run
    extra: list[Event] = [CancelRequested(event_id="cxl", job_id=job.id)]
    order = data.draw(st.permutations([*events, *data.draw(st.lists(st.sampled_from(extra),
                                                                    max_size=1))]))
    for i, event in enumerate(order):
        now = T0 + timedelta(seconds=data.draw(st.integers(0, 40))) + timedelta(microseconds=i)
        for _ in range(2):  # probes: decided, then thrown away
            assert_same(job, data.draw(liveness_events(job)), now)
        job = assert_same(job, event, now).job


def test_liveness_shortcut_is_taken_for_running_participants_only() -> None:
    """The equality tests above would pass if the shortcut were never taken: pin its use."""
    job = dispatched(new_job(spec(2)))
    beat = Heartbeat(event_id="hb", job_id=job.id, participant="client-0", worker="cli0", seq=1)
    taken = _liveness(job, beat, T0)
    assert taken is not None and taken.changed and not taken.quiet  # ASSIGNED -> STARTED
    job = taken.job
    again = _liveness(job, beat.model_copy(update={"seq": 2}), T0 + timedelta(seconds=1))
    assert again is not None and again.changed and again.quiet  # liveness only
    assert again.job.participants["client-0"].last_seq == 2
    stranger = beat.model_copy(update={"worker": "intruder"})
    assert _liveness(job, stranger, T0) is None  # refused by the rules path, with its reason
    cancelled = decide(job, CancelRequested(event_id="c", job_id=job.id), T0).job
    assert cancelled.phase is Phase.CANCELLING
    assert _liveness(cancelled, beat.model_copy(update={"seq": 3}), T0) is not None


PHASES = [Phase.STARTING, Phase.RUNNING, Phase.FINALIZING, Phase.CANCELLING]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), run=runs())
def test_liveness_shortcut_equals_the_rules_on_arbitrary_states(
        data: st.DataObject, run: tuple[Job, list[Event], object]) -> None:
    """Participant states, phase and round drawn freely: the shortcut's own guard decides."""
    job, _, _ = run
    participants = {
        pid: evolve(p, {"state": data.draw(st.sampled_from(list(ParticipantState))),
                        "round": data.draw(st.integers(0, 3)),
                        "last_seq": data.draw(st.integers(-1, 30)),
                        "metrics_round": data.draw(st.none() | st.integers(0, 3))})
        for pid, p in job.participants.items()
    }
    job = evolve(job, {"participants": participants,
                       "phase": data.draw(st.sampled_from(PHASES)),
                       "round": data.draw(st.integers(0, 3))})
    job = evolve(job, {"deadline_at": data.draw(st.sampled_from([next_deadline_at(job), None]))})
    now = T0 + timedelta(seconds=data.draw(st.integers(0, 40)))
    for _ in range(4):
        event = data.draw(liveness_events(job))
        job = assert_same(job, event, now).job


@pytest.mark.parametrize("value", ["job\n", "\njob", "-job", "", "a" * 129, "a/b", "j b"])
def test_is_name_refuses_what_the_name_type_refuses(value: str) -> None:
    """``is_name`` (plain code) and ``Name`` (pydantic) agree, trailing newline included."""
    assert not is_name(value)
    with pytest.raises(ValidationError):
        TypeAdapter(Name).validate_python(value)


def test_is_name_accepts_names() -> None:
    for value in ("job-1", "a", "W_2.x", "a" * 128):
        assert is_name(value)
        assert TypeAdapter(Name).validate_python(value) == value
