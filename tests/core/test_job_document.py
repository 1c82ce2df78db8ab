"""``Job`` is a frozen, slotted dataclass; pydantic validates it where it enters (documents)
through ``JOB_ADAPTER``. A document survives the round trip, and a bad one is refused as
clearly as when ``Job`` was a pydantic model."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from orchestrator.core import (
    HISTORY_ADAPTER,
    Decision,
    Job,
    JobDispatched,
    ParticipantState,
    decide,
    document_value,
)
from tests.core.scenarios import T0, Emitter, decide_one, dispatched, new_job
from tests.core.test_properties import Run, chunked, deliveries, interventions, runs


def test_a_document_round_trips_to_an_equal_job() -> None:
    job = dispatched()
    job = decide_one(job, Emitter(job, "client-0").heartbeat(), T0 + timedelta(seconds=1)).job
    again = Job.from_document(job.to_document())
    assert again == job
    assert type(again) is Job and type(again.participants["client-0"]).__name__ == "Participant"
    assert again.participants["client-0"].state is ParticipantState.STARTED


def test_naive_datetimes_from_mongo_come_back_utc() -> None:
    doc = dispatched().to_document()
    doc["updated_at"] = doc["updated_at"].replace(tzinfo=None)
    job = Job.from_document(doc)
    assert job.updated_at == dispatched().updated_at and job.updated_at.tzinfo is not None


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.__setitem__("colour", "red"), "Unexpected keyword argument"),  # (extra)
    (lambda d: d["participants"]["server"].__setitem__("worker", "a b"),
     "String should match pattern"),
    (lambda d: d.__setitem__("status", "DONE-ISH"), "Input should be"),
    (lambda d: d.pop("created_at"), "Field required"),
])
def test_a_bad_document_is_refused(mutate: object, message: str) -> None:
    doc = dispatched().to_document()
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(ValidationError, match=message):
        Job.from_document(doc)


def test_to_document_keeps_datetimes_and_the_id() -> None:
    job = dispatched()
    doc = job.to_document()
    assert doc["_id"] == job.id and "id" not in doc
    assert isinstance(doc["created_at"], datetime)
    assert doc["spec"] == job.spec.model_dump(mode="json")


# --- partial writes: what the Mongo store does with a decision ---------------------------------


def apply_update(doc: dict[str, Any], d: Decision) -> dict[str, Any]:
    """``$set`` of every changed path (dotted, as Mongo reads it) and ``$push`` of the
    history, applied to a copy of ``doc``."""
    doc = copy.deepcopy(doc)
    for path in d.changed:
        *parents, leaf = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[leaf] = document_value(d.job, path)
    doc["history"] = [*doc["history"], *(HISTORY_ADAPTER.dump_python(h) for h in d.history)]
    return doc


def check_partial_write(before: Job, d: Decision) -> None:
    assert len(set(d.changed)) == len(d.changed), d.changed
    assert not any(p == "history" or p.startswith(("history.", "spec")) for p in d.changed)
    old, new = before.to_document(), d.job.to_document()
    assert apply_update(old, d) == new
    for path in d.changed:  # only paths whose value changed (the stamps always do)
        if path not in ("updated_at", "version"):
            assert document_value(before, path) != document_value(d.job, path), path


@settings(max_examples=150, deadline=None)
@given(data=st.data(), run=runs())
def test_changed_paths_rebuild_the_new_document(data: st.DataObject, run: Run) -> None:
    """Every decision's ``changed`` paths, set from ``document_value`` on the old document,
    with ``history`` appended, give exactly the new job's document: the store may write
    just those fields."""
    job, events, _ = run
    batches = data.draw(chunked(data.draw(deliveries(events, interventions(job)))))
    doc = job.to_document()
    now = T0
    for batch in batches:
        now += timedelta(seconds=data.draw(st.integers(0, 30)), milliseconds=1)
        d = decide(job, batch, now)
        check_partial_write(job, d)
        doc = apply_update(doc, d)  # the stored document, one partial write at a time
        job = d.job
    assert doc == job.to_document()
    assert Job.from_document(doc) == job


def test_dispatch_is_a_partial_write_and_a_refusal_writes_nothing() -> None:
    job = new_job()
    d = decide_one(job, JobDispatched(event_id="d", job_id=job.id,
                                      assignments={p: f"run-{p}" for p in job.participants}), T0)
    assert {"status", "phase", "started_at", "deadline_at", "participants.server.state",
            "participants.client-1.run_id"} <= set(d.changed) and len(d.history) == 1
    check_partial_write(job, d)
    refused = decide_one(job, Emitter(d.job, "server").started(), T0)
    assert refused.changed == () and refused.job is job and not refused.history


def test_document_value_matches_to_document_and_is_a_copy() -> None:
    job = dispatched()
    c0 = Emitter(job, "client-0")
    job = decide(job, [c0.metrics(1, loss=0.5), c0.failed("oom")], T0).job
    doc = job.to_document()
    for path in ("status", "phase", "deadline_at", "participants.client-0.metrics",
                 "participants.client-0.error", "participants.client-0.state", "error"):
        *parents, leaf = path.split(".")
        expected: Any = doc
        for key in [*parents, leaf]:
            expected = expected[key]
        assert document_value(job, path) == expected, path
    metrics = document_value(job, "participants.client-0.metrics")
    metrics["loss"] = 9.0
    assert job.participants["client-0"].metrics == {"loss": 0.5}
