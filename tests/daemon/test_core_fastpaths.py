"""The hot-path shortcuts made in the core for the daemon equal their reference definitions.

* ``next_deadline_at(job)`` is computed directly; it must equal ``deadlines(job)[0].at``.
* ``evolve`` replaces ``model_copy(update=...)``; the results must be equal models.
* ``decide``'s field-wise change detection must agree with comparing whole jobs.
* ``command_id`` always yields a valid name, deterministically.
"""

from __future__ import annotations

import re
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core import CancelRequested, DeadlineExpired, Event, Job, deadlines, decide
from orchestrator.core._types import evolve
from orchestrator.core.deadlines import next_deadline_at
from orchestrator.core.decide import command_id
from tests.core.scenarios import T0, spec
from tests.core.test_properties import runs

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


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
        stripped = after.model_copy(update={"updated_at": job.updated_at})
        assert decision.changed == (stripped != job), (event, decision.reason)
        job = after


def test_evolve_equals_model_copy() -> None:
    job = Job.new("j", spec(), T0)
    changes = {"round": 3, "version": 7}
    assert evolve(job, changes) == job.model_copy(update=changes)
    assert evolve(job, changes).model_fields_set == job.model_copy(update=changes).model_fields_set
    assert job.round == 0, "the original is untouched"


@given(st.text(min_size=1, max_size=128), st.sampled_from(["start", "stop"]),
       st.sampled_from(["server", "client-0", "client-999"]))
def test_command_ids_are_valid_deterministic_names(event_id: str, action: str, pid: str) -> None:
    cid = command_id(event_id, action, pid)
    assert NAME.match(cid)
    assert len(cid) <= 128
    assert cid == command_id(event_id, action, pid)
    if NAME.match(event_id) and len(event_id) + len(action) + len(pid) + 2 <= 128:
        assert cid == f"{event_id}.{action}.{pid}"
