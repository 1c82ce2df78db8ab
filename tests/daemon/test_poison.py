"""One entry that breaks intake or event application is rejected alone (invariant 8).

Whatever a single entry raises — a ``RecursionError`` from deeply nested JSON, or any other
exception while it is handled — it gets its own recorded rejection and dead letter, and the
valid entries read in the same batch are applied as if it had not been there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.bus.keys import Keys
from orchestrator.bus.streams import Redis
from orchestrator.core import Job, JobStatus, new_job
from orchestrator.daemon import intake
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    daemon_pending,
    daemon_running,
    dead_letters,
    fast_options,
    job_spec,
    running,
    wait_finished,
    workers_for,
)

NESTED = "[" * 100_000 + "]" * 100_000


def good(job_id: str) -> str:
    return json.dumps(job_spec(job_id, clients=1, rounds=1).to_json_dict())


async def _submit_in_one_pipeline(redis: Redis, keys: Keys, specs: list[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for spec in specs:
            pipe.xadd(keys.submissions, {"spec": spec})
        await pipe.execute()


async def test_a_deeply_nested_submission_is_rejected_alone(redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    nested_spec = '{"workload": "noop", "labels": ' + NESTED + "}"
    workers = workers_for(redis, keys, clients=1)
    async with daemon_running(store, redis, fast_options(keys.namespace)) as daemon, \
            running(*(w.run for w in workers)):
        # Everything in one pipeline, so one read batch holds the poison and the good ones.
        await _submit_in_one_pipeline(redis, keys, [good("a"), nested_spec, good("b"),
                                                    good("c")])
        # An event entry nested as deeply, on the events stream, beside them.
        await redis.xadd(keys.events_for("a"), {"event": NESTED})
        jobs = [await wait_finished(store, job_id) for job_id in ("a", "b", "c")]
        stats = daemon.stats
    assert [j.status for j in jobs] == [JobStatus.FINISHED_SUCCESSFULLY] * 3
    rejections = await store.rejections()
    kinds = sorted(r.kind for r in rejections)
    assert kinds == ["invalid_event", "too_deep"], [(r.kind, r.reason) for r in rejections]
    assert all(r.reason for r in rejections)
    letters = await dead_letters(redis, keys)
    assert len(letters) == 2
    assert stats.rejections == 2
    assert await daemon_pending(redis, [keys.submissions, *keys.all_event_streams()]) == 0


async def test_an_entry_that_raises_while_handled_is_rejected_alone(
        redis: Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a validation error: an unexpected exception while one submission is turned into a
    job. That entry alone is rejected (kind ``unprocessable``); its batch goes on."""
    def poisoned(job_id: str, *args: Any, **kwargs: Any) -> Job:
        if job_id == "poison":
            raise KeyError("simulated bug")
        return new_job(job_id, *args, **kwargs)

    monkeypatch.setattr(intake, "new_job", poisoned)
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1)
    async with daemon_running(store, redis, fast_options(keys.namespace)), \
            running(*(w.run for w in workers)):
        await _submit_in_one_pipeline(redis, keys, [good("x"), good("poison"), good("y")])
        done = [await wait_finished(store, job_id) for job_id in ("x", "y")]
    assert [j.status for j in done] == [JobStatus.FINISHED_SUCCESSFULLY] * 2
    assert await store.find_by_id("poison") is None
    rejections = await store.rejections()
    assert [r.kind for r in rejections] == ["unprocessable"]
    assert "KeyError" in rejections[0].reason
    assert len(await dead_letters(redis, keys)) == 1
    assert await daemon_pending(redis, [keys.submissions]) == 0
