"""``Job`` is a frozen, slotted dataclass; pydantic validates it where it enters (documents)
through ``JOB_ADAPTER``. A document survives the round trip, and a bad one is refused as
clearly as when ``Job`` was a pydantic model."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from orchestrator.core import Job, ParticipantState, decide
from tests.core.scenarios import T0, Emitter, dispatched


def test_a_document_round_trips_to_an_equal_job() -> None:
    job = dispatched()
    job = decide(job, Emitter(job, "client-0").heartbeat(), T0 + timedelta(seconds=1)).job
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
