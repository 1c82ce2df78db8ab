"""One entry that breaks intake or event application is rejected alone (invariant 8).

Whatever a single entry holds — JSON nested deeper than the limit (refused before a parser
recurses), duplicate keys, NaN, too many keys — or raises while it is handled, it gets its own
recorded rejection and dead letter, and the valid entries read in the same batch are applied
as if it had not been there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import Job, JobStatus, RoundMetrics, new_job
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
#: Ten times deeper than Python's recursion limit, yet under the event size limit.
EVENT_NESTED = "[" * 10_000 + "]" * 10_000


def good(job_id: str) -> str:
    return json.dumps(job_spec(job_id, clients=1, rounds=1).to_json_dict())


async def _submit_in_one_pipeline(redis: Redis, keys: Keys, specs: list[str]) -> None:
    async with redis.pipeline(transaction=False) as pipe:
        for spec in specs:
            pipe.xadd(keys.submissions, {"spec": spec})
        await pipe.execute()


@pytest.mark.fault("a nested-JSON submission among good ones", invariants=(5, 8))
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
        await redis.xadd(keys.events_for("a"), {"event": EVENT_NESTED})
        jobs = [await wait_finished(store, job_id) for job_id in ("a", "b", "c")]
        stats = daemon.stats
    assert [j.status for j in jobs] == [JobStatus.FINISHED_SUCCESSFULLY] * 3
    rejections = await store.rejections()
    kinds = sorted(r.kind for r in rejections)
    assert kinds == ["too_deep", "too_deep"], [(r.kind, r.reason) for r in rejections]
    assert {r.source for r in rejections} == {keys.submissions, keys.events_for("a")}
    assert all(r.reason for r in rejections)
    letters = await dead_letters(redis, keys)
    assert len(letters) == 2
    assert stats.rejections == 2
    assert await daemon_pending(redis, [keys.submissions, *keys.all_event_streams()]) == 0


@pytest.mark.fault("an entry that raises while handled", invariants=(5, 8))
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


@pytest.mark.fault("limit-breaking submissions among good ones", invariants=(5, 8))
async def test_limit_breaking_submissions_between_valid_ones_are_rejected_alone(
        redis: Redis, keys: Keys) -> None:
    """One pipeline, so one read: valid, too deep, valid, duplicate key, NaN, too many keys,
    valid. The three valid jobs complete; each bad one has its own exact reason."""
    store = MemoryJobStore()
    base = json.loads(good("p"))
    deep = json.dumps({**base, "job_id": "deep", "labels": json.loads("[" * 33 + "]" * 33)})
    dup = good("dup").replace('"rounds": 1', '"rounds": 1, "rounds": 2', 1)
    nan = json.dumps({**base, "job_id": "nan", "timeouts": {"round_s": float("nan")}})
    wide = json.dumps({**base, "job_id": "wide", "server_config": {"x": [0] * 10_001}})
    workers = workers_for(redis, keys, clients=1)
    async with daemon_running(store, redis, fast_options(keys.namespace)) as daemon, \
            running(*(w.run for w in workers)):
        await _submit_in_one_pipeline(redis, keys, [good("v1"), deep, good("v2"), dup, nan,
                                                    wide, good("v3")])
        jobs = [await wait_finished(store, job_id) for job_id in ("v1", "v2", "v3")]
        stats = daemon.stats
    assert [j.status for j in jobs] == [JobStatus.FINISHED_SUCCESSFULLY] * 3
    for job_id in ("deep", "dup", "nan", "wide"):
        assert await store.find_by_id(job_id) is None
    reasons = sorted((r.kind, r.reason) for r in await store.rejections())
    assert reasons == sorted([
        ("too_deep", "spec nests objects and arrays more than 32 levels deep; the limit is 32"),
        ("duplicate_key",
         "spec has the key 'rounds' twice at the top level; duplicate keys are not allowed"),
        ("invalid_spec", "invalid job spec: timeouts.round_s: not a finite number"),
        ("too_many_keys", "spec has 10020 object keys and array items; the limit is 10000"),
    ])
    assert stats.rejections == 4 and len(await dead_letters(redis, keys)) == 4
    assert await daemon_pending(redis, [keys.submissions]) == 0


async def test_limit_breaking_events_are_rejected_alone(redis: Redis, keys: Keys) -> None:
    """On the events stream: a duplicate key, an oversize entry and a too-wide one beside the
    job's real events; each is rejected with its reason, the job completes."""
    store = MemoryJobStore()
    metrics = RoundMetrics(event_id="m1", job_id="e", participant="server", worker="srv",
                           seq=1, round=1, metrics={"loss": 1.0}).model_dump_json()
    dup = metrics.replace('"round":1', '"round":1,"round":2', 1)
    assert dup != metrics
    oversize = metrics.replace('"loss"', '"' + "x" * 70_000 + '"', 1)
    wide = '{"type": "round.metrics", "items": [' + ",".join(["1"] * 10_001) + "]}"
    workers = workers_for(redis, keys, clients=1)
    async with daemon_running(store, redis, fast_options(keys.namespace)), \
            running(*(w.run for w in workers)):
        async with redis.pipeline(transaction=False) as pipe:
            for raw in (dup, oversize, wide):
                pipe.xadd(keys.events_for("e"), {"event": raw})
            await pipe.execute()
        await _submit_in_one_pipeline(redis, keys, [good("e")])
        job = await wait_finished(store, "e")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    reasons = sorted((r.kind, r.reason) for r in await store.rejections())
    assert reasons == sorted([
        ("duplicate_key",
         "event has the key 'round' twice at the top level; duplicate keys are not allowed"),
        ("oversize", f"event is {len(oversize)} bytes; the limit is 65536"),
        ("too_many_keys", "event has 10003 object keys and array items; the limit is 10000"),
    ])
    assert await daemon_pending(redis, keys.all_event_streams()) == 0
