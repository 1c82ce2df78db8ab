"""One contract, every job-store backend: memory, mongomock-motor, and the Mongo wire
stand-in through the unmodified PyMongo async driver (separate server process)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import cast

import anyio
import pytest
from helpers import unique
from mongomock_motor import AsyncMongoMockClient

from orchestrator.core import (
    CancelRequested,
    Job,
    JobDispatched,
    JobStatus,
    decide,
)
from orchestrator.core import new_job as make_job
from orchestrator.daemon.apply import apply_events
from orchestrator.errors import JobNotFoundError
from orchestrator.store import (
    JobStore,
    JobWrite,
    MemoryJobStore,
    MongoJobStore,
    RefusedEvent,
    Rejection,
    connect_mongo,
)
from tests import mongomock_compat
from tests.core.scenarios import T0, Emitter, new_job, spec

BACKENDS = ["memory", "mongomock", "wire"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    backend: JobStore
    if request.param == "memory":
        backend = MemoryJobStore()
    elif request.param == "mongomock":
        mongomock_compat.install()
        backend = MongoJobStore(AsyncMongoMockClient()[unique("db")])
    else:
        server = request.getfixturevalue("mongo_server")
        backend = connect_mongo(server.url, unique("db"))
    await backend.ensure_indexes()
    yield backend
    await backend.close()


def dispatch_event(job: Job, event_id: str = "d") -> JobDispatched:
    return JobDispatched(
        event_id=event_id,
        job_id=job.id,
        assignments={p: uuid.uuid4().hex for p in job.participants},
    )


async def test_create_is_idempotent_on_job_id(store: JobStore) -> None:
    job = new_job()
    stored, created = await store.create(job)
    assert created and stored.id == job.id
    again, created_again = await store.create(new_job())
    assert not created_again and again.id == job.id
    assert [j.id for j in await store.find_by_status(None)] == [job.id]


async def test_create_is_idempotent_on_idempotency_key(store: JobStore) -> None:
    s = spec().model_copy(update={"idempotency_key": "key-1"})
    _, created = await store.create(make_job("a", s, T0))
    second, created2 = await store.create(make_job("b", s, T0))
    assert created and not created2 and second.id == "a"
    assert await store.find_by_id("b") is None
    # jobs without a key never collide with each other
    assert (await store.create(make_job("c", spec(), T0)))[1]
    assert (await store.create(make_job("d", spec(), T0)))[1]


async def test_duplicate_creates_racing_make_one_job(store: JobStore) -> None:
    s = spec().model_copy(update={"idempotency_key": "race"})
    results: list[bool] = []

    async def create(i: int) -> None:
        results.append((await store.create(make_job(f"job-{i}", s, T0)))[1])

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(create, i)
    assert results.count(True) == 1
    assert len(await store.find_by_status(None, limit=100)) == 1


async def test_find_by_id_and_get(store: JobStore) -> None:
    await store.create(new_job())
    found = await store.find_by_id("job1")
    assert found is not None and found.status is JobStatus.NOT_STARTED
    assert found.created_at == T0  # tz-aware UTC round trip
    assert await store.find_by_id("nope") is None
    with pytest.raises(JobNotFoundError):
        await store.get("nope")


async def test_find_by_status_newest_first_with_limit_and_skip(store: JobStore) -> None:
    for i in range(5):
        await store.create(make_job(f"j{i}", spec(), T0 + timedelta(seconds=i)))
    await apply_events(store, [dispatch_event(await store.get("j2"))], T0)
    newest = await store.find_by_status(JobStatus.NOT_STARTED, limit=2)
    assert [j.id for j in newest] == ["j4", "j3"]
    assert [j.id for j in await store.find_by_status(JobStatus.NOT_STARTED, 2, 2)] == ["j1", "j0"]
    assert [j.id for j in await store.find_by_status(JobStatus.IN_PROGRESS)] == ["j2"]
    assert [j.id for j in await store.find_active(JobStatus.NOT_STARTED)] == [
        "j0",
        "j1",
        "j3",
        "j4",
    ]


async def test_a_batch_writes_one_cas_per_job(store: JobStore) -> None:
    job, _ = await store.create(new_job())
    await apply_events(store, [dispatch_event(job)], T0)
    job = await store.get(job.id)
    srv, c0 = Emitter(job, "server"), Emitter(job, "client-0")
    events = [
        srv.started(),
        srv.round_started(1),
        c0.metrics(1, loss=0.5),
        srv.metrics(1),
        srv.heartbeat(1),
        c0.heartbeat(1),
    ]
    before = store.round_trips
    result = await apply_events(store, events, T0 + timedelta(seconds=1))
    assert all(o.applied for o in result.outcomes), result.outcomes
    assert store.round_trips - before <= 3  # load + records + one CAS write
    stored = await store.get(job.id)
    assert stored.version == job.version + 1
    assert stored.round == 1
    rows = await store.metrics(job.id)
    assert [(r["participant"], r["round"], r["metrics"]) for r in rows] == [
        ("client-0", 1, {"loss": 0.5}),
        ("server", 1, {"loss": 1.0}),
    ]


async def test_resent_events_change_nothing(store: JobStore) -> None:
    job, _ = await store.create(new_job())
    await apply_events(store, [dispatch_event(job)], T0)
    dispatched = await store.get(job.id)
    srv = Emitter(dispatched, "server")
    clients_done = [Emitter(dispatched, p.id).finished() for p in dispatched.clients]
    events = [srv.started(), srv.finished(), *clients_done]
    await apply_events(store, events, T0)
    done = await store.get(job.id)
    assert done.status is JobStatus.FINISHED_SUCCESSFULLY
    result = await apply_events(store, events, T0 + timedelta(seconds=5))
    assert not any(o.applied for o in result.outcomes)
    assert not result.decisions and not result.commands
    assert (await store.get(job.id)).version == done.version


async def test_two_writers_racing_lose_no_update(store: JobStore) -> None:
    """Many concurrent batches on one job: every event lands exactly once."""
    job, _ = await store.create(new_job(spec(4)))
    await apply_events(store, [dispatch_event(job)], T0)
    job = await store.get(job.id)
    emitters = [Emitter(job, p) for p in job.participants]
    per_writer = [[e.metrics(r, loss=float(r)) for r in range(1, 6)] for e in emitters]
    retries = 0

    async def writer(events: list) -> None:  # type: ignore[type-arg]
        nonlocal retries
        for event in events:
            result = await apply_events(store, [event], T0 + timedelta(seconds=1))
            retries += result.cas_retries
            assert result.outcomes[0].applied

    async with anyio.create_task_group() as tg:
        for events in per_writer:
            tg.start_soon(writer, events)
    final = await store.get(job.id)
    assert all(p.metrics_round == 5 for p in final.participants.values())
    assert len(await store.metrics(job.id)) == 5 * 5
    assert final.version == job.version + 25  # every write landed once, none lost


async def test_stale_version_write_is_retried_not_lost(store: JobStore) -> None:
    job, _ = await store.create(new_job())
    # A rival changes the job between our load and our write: simulate by two applies
    # on a job loaded before the first one.
    stale = await store.get(job.id)
    await apply_events(store, [CancelRequested(event_id="c", job_id=job.id)], T0)
    lost = await store.cas_many(
        [JobWrite(replace(stale, version=stale.version + 1, round=9), ("round", "version"))]
    )
    assert lost == {job.id}
    assert (await store.get(job.id)).status is JobStatus.FINISHED_CANCELLED


async def test_unknown_job_events_are_reported(store: JobStore) -> None:
    result = await apply_events(store, [CancelRequested(event_id="c", job_id="ghost")], T0)
    assert result.outcomes[0].reason == "unknown job ghost" and not result.outcomes[0].applied


async def test_deadline_query_finds_only_due_active_jobs(store: JobStore) -> None:
    await store.create(make_job("early", spec(start_s=10), T0))
    await store.create(make_job("late", spec(start_s=100), T0))
    await store.create(make_job("gone", spec(start_s=1), T0))
    await apply_events(store, [CancelRequested(event_id="c", job_id="gone")], T0)
    due = await store.find_due(T0 + timedelta(seconds=50))
    assert [j.id for j in due] == ["early"]


async def test_checkpoint_manifest_and_final_checkpoint(store: JobStore) -> None:
    job, _ = await store.create(new_job())
    await apply_events(store, [dispatch_event(job)], T0)
    dispatched = await store.get(job.id)
    srv = Emitter(dispatched, "server")
    ck1, final = srv.checkpoint(1), srv.checkpoint(2, final=True)
    clients_done = [Emitter(dispatched, p.id).finished() for p in dispatched.clients]
    await apply_events(store, [srv.finished(final_checkpoint=final.key),  # type: ignore[union-attr]
                               *clients_done], T0)
    assert (await store.get(job.id)).status is JobStatus.IN_PROGRESS
    await apply_events(store, [ck1, final, final], T0)
    rows = await store.checkpoints(job.id)
    assert [(r["round"], r["key"], r["final"]) for r in rows] == [
        (1, ck1.key, False),
        (2, final.key, True),
    ]  # type: ignore[union-attr]
    assert (await store.get(job.id)).status is JobStatus.FINISHED_SUCCESSFULLY


async def test_final_flag_in_the_manifest_is_sticky(store: JobStore) -> None:
    """The last round and the final model may share a key: either order keeps final."""
    for job_id, order in (("a", (True, False)), ("b", (False, True))):
        job, _ = await store.create(new_job(job_id=job_id))
        await apply_events(store, [dispatch_event(job)], T0)
        srv = Emitter(await store.get(job_id), "server")
        saves = [srv.checkpoint(3, final=flag) for flag in order]
        await apply_events(store, saves[:1], T0)
        await apply_events(store, saves[1:], T0)
        rows = await store.checkpoints(job_id)
        assert [(r["round"], r["final"]) for r in rows] == [(3, True)]


async def test_insert_many_reports_each_collision(store: JobStore) -> None:
    keyed = spec().model_copy(update={"idempotency_key": "k"})
    assert await store.insert_many([make_job("a", spec(), T0)]) == [None]
    before = store.round_trips
    results = await store.insert_many([
        make_job("b", spec(), T0),        # new
        make_job("a", spec(), T0),        # same id as a stored job
        make_job("c", keyed, T0),         # new, holds key k
        make_job("d", keyed, T0),         # same key as c, in the same batch
    ])
    assert [None if r is None else r.id for r in results] == [None, "a", None, "c"]
    assert store.round_trips - before <= 2  # one insert, one look-up of the holders
    assert await store.find_by_id("d") is None
    assert await store.insert_many([]) == []


async def test_writes_are_partial_and_history_is_appended(store: JobStore) -> None:
    """A decision on a job loaded without its history writes only what changed and appends
    its history entries to the stored ones."""
    job, _ = await store.create(new_job())
    await apply_events(store, [dispatch_event(job)], T0)
    light = (await store.load_many([job.id], history=False))[job.id]
    decision = decide(light, [Emitter(light, "server").heartbeat(1)], T0 + timedelta(seconds=1))
    assert "status" not in decision.changed and not decision.history
    assert "participants.server.last_seen" in decision.changed
    assert await store.cas_many([JobWrite.of(decision)]) == set()
    stored = await store.get(job.id)
    assert stored.participants["server"].last_seen == T0 + timedelta(seconds=1)
    assert stored.participants["server"].round == 1
    assert [h.to_status for h in stored.history] == [JobStatus.NOT_STARTED,
                                                     JobStatus.IN_PROGRESS]
    failed = decide(stored, [Emitter(stored, "server").failed()], T0 + timedelta(seconds=2))
    assert await store.cas_many([JobWrite.of(failed)]) == set()
    final = await store.get(job.id)
    assert final.status is JobStatus.FINISHED_WITH_ERROR
    assert [h.to_status for h in final.history] == [
        JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS, JobStatus.FINISHED_WITH_ERROR]
    assert final.error is not None and final.error.participant == "server"
    assert final == failed.job  # the partial write left the document equal to the decision


async def test_records_are_idempotent_upserts(store: JobStore) -> None:
    job, _ = await store.create(new_job())
    await apply_events(store, [dispatch_event(job)], T0)
    job = await store.get(job.id)
    srv, c1 = Emitter(job, "server"), Emitter(job, "client-1")
    events = [srv.metrics(1, accuracy=0.5), c1.metrics(1, loss=0.7)]
    for _ in range(2):
        await apply_events(store, events, T0)
    await apply_events(store, [srv.metrics(2, accuracy=0.8)], T0)
    rows = await store.metrics("job1")
    assert [(r["participant"], r["round"]) for r in rows] == [
        ("client-1", 1),
        ("server", 1),
        ("server", 2),
    ]
    job = await store.get("job1")
    assert job.server.metrics == {"accuracy": 0.8}
    assert job.participants["client-1"].metrics == {"loss": 0.7}


async def test_rejections_are_recorded(store: JobStore) -> None:
    await store.record_rejection(
        Rejection(at=T0, source="s", kind="not_json", reason="Expecting value", entry_id="1-0")
    )
    await store.record_rejection(
        Rejection(at=T0 + timedelta(seconds=1), source="s", kind="oversize", reason="too big")
    )
    assert [r.kind for r in await store.rejections()] == ["oversize", "not_json"]


async def test_rejections_of_one_job(store: JobStore) -> None:
    for i, job_id in enumerate(["a", "b", "a", None]):
        await store.record_rejection(Rejection(at=T0 + timedelta(seconds=i), source="s",
                                               kind=f"k{i}", reason="r", job_id=job_id))
    assert [r.kind for r in await store.rejections(job_id="a")] == ["k2", "k0"]
    assert [r.kind for r in await store.rejections(limit=1, job_id="a")] == ["k2"]
    assert await store.rejections(job_id="ghost") == []
    assert len(await store.rejections()) == 4


def test_statuses_listed_in_order() -> None:
    assert JobStatus.list() == [
        "NOT_STARTED",
        "IN_PROGRESS",
        "FINISHED_SUCCESSFULLY",
        "FINISHED_WITH_ERROR",
        "FINISHED_CANCELLED",
    ]


def refused_row(i: int, job_id: str = "a") -> RefusedEvent:
    return RefusedEvent(at=T0 + timedelta(seconds=i), source="ns:events:{0}", entry_id=f"{i}-0",
                        reason="refused: bad MAC", event_type="participant.finished",
                        event_id=f"e{i}", job_id=job_id, participant="server", worker="srv")


async def test_refused_events_are_recorded_newest_first_by_job(store: JobStore) -> None:
    await store.record_refused_events([])
    await store.record_refused_events([refused_row(0), refused_row(1, "b")])
    await store.record_refused_events([refused_row(2)])
    assert [r.entry_id for r in await store.refused_events()] == ["2-0", "1-0", "0-0"]
    assert [r.entry_id for r in await store.refused_events(job_id="a")] == ["2-0", "0-0"]
    assert [r.entry_id for r in await store.refused_events(limit=1)] == ["2-0"]
    assert await store.refused_events(job_id="ghost") == []
    assert (await store.refused_events())[0] == refused_row(2)


async def test_refused_events_are_bounded_keeping_the_newest(store: JobStore) -> None:
    small: JobStore = (MemoryJobStore(refused_cap=3) if isinstance(store, MemoryJobStore)
                       else MongoJobStore(cast("MongoJobStore", store).db, refused_cap=3))
    await small.record_refused_events([refused_row(i) for i in range(4)])
    await small.record_refused_events([refused_row(4)])
    assert [r.entry_id for r in await small.refused_events()] == ["4-0", "3-0", "2-0"]
