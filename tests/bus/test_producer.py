"""``Bus``, the producer side, against a real Redis (Valkey) server: what each method writes."""

from __future__ import annotations

import json

import anyio

from orchestrator.bus import (
    Batch,
    Bus,
    Keys,
    Redis,
    StreamConsumer,
    execute_batch,
    submission_job_id,
)
from orchestrator.core import (
    COMMAND_ADAPTER,
    EVENT_ADAPTER,
    Heartbeat,
    StopParticipant,
)
from tests.bus.support import a_job, rows


async def test_bus_producer_wire_formats(redis: Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    hb = Heartbeat(event_id="e1", job_id="job-a", participant="server", worker="w", seq=1)
    entry_id = await bus.publish_event(hb)
    ids = await bus.publish_events([hb.model_copy(update={"event_id": f"e{i}"})
                                    for i in range(2, 5)])
    assert len(ids) == 3
    written = await rows(redis, keys.events_for("job-a"))
    assert written[0][0].decode() == entry_id
    assert EVENT_ADAPTER.validate_json(written[0][1][b"event"]) == hb

    stop = StopParticipant(command_id="c1", job_id="job-a", participant="server", worker="w")
    await bus.send_commands([stop])
    [(_, fields)] = await rows(redis, keys.commands("w"))
    assert COMMAND_ADAPTER.validate_json(fields[b"command"]) == stop

    sub_id = await bus.submit('{"workload": "noop"}', idempotency_key="k1")
    [(raw_id, fields)] = await rows(redis, keys.submissions)
    assert raw_id.decode() == sub_id
    assert fields == {b"spec": b'{"workload": "noop"}', b"idempotency_key": b"k1"}
    assert submission_job_id(sub_id, keys.namespace) == submission_job_id(sub_id, keys.namespace)
    assert submission_job_id(sub_id, keys.namespace) != submission_job_id(sub_id, "other")

    await bus.request_cancel("job-a", reason="enough", requested_by="alice")
    [(_, fields)] = await rows(redis, keys.control)
    assert fields == {b"type": b"cancel", b"job_id": b"job-a", b"reason": b"enough",
                      b"requested_by": b"alice"}


async def test_worker_registration_expires_and_announces_itself(redis: Redis,
                                                                keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.register_worker("w1", "server", ttl_s=0.3, info={"slots": 2})
    await bus.register_worker("w1", "server", ttl_s=0.3, info={"slots": 2})  # refresh
    await bus.register_worker("w2", "client", ttl_s=5, info={})
    alive = await bus.alive_workers()
    assert set(alive) == {"w1", "w2"}
    assert alive["w1"]["role"] == "server"
    assert alive["w1"]["slots"] == 2
    assert set(await bus.alive_workers(["w1", "nobody"])) == {"w1"}
    announced = [f[b"worker"] for _, f in await rows(redis, keys.control)
                 if f[b"type"] == b"worker_registered"]
    assert announced == [b"w1", b"w2"], "only new registrations are announced"
    await anyio.sleep(0.4)
    assert set(await bus.alive_workers()) == {"w2"}


async def test_an_update_is_one_entry_on_the_updates_stream(redis: Redis, keys: Keys) -> None:
    job = a_job("job-u")
    await Bus(redis, keys).publish_update(job, "submitted")
    [(_, f)] = await rows(redis, keys.updates)
    assert await redis.keys(f"{keys.namespace}:job:*") == []  # no per-job stream
    body = json.loads(f[b"update"])
    assert body["job_id"] == "job-u"
    assert (body["status"], body["phase"], body["reason"]) == ("NOT_STARTED", "queued",
                                                                "submitted")


async def test_a_submission_without_idempotency_key_carries_only_the_spec(
        redis: Redis, keys: Keys) -> None:
    sub_id = await Bus(redis, keys).submit('{"workload": "noop"}')
    [(raw_id, fields)] = await rows(redis, keys.submissions)
    assert (raw_id.decode(), fields) == (sub_id, {b"spec": b'{"workload": "noop"}'})
    job_id = submission_job_id(sub_id, keys.namespace)
    assert len(job_id) == 32 and int(job_id, 16) >= 0


async def test_nothing_to_send_sends_nothing(redis: Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    assert await bus.publish_events([]) == []
    await bus.send_commands([])
    await bus.publish_updates([])
    assert await redis.keys(f"{keys.namespace}:*") == []


async def test_a_commit_batch_carries_commands_updates_and_acks_in_one_round_trip(
        redis: Redis, keys: Keys) -> None:
    """The daemon's commit: ``queue_commands``, ``queue_updates`` and ``queue_ack`` into one
    batch, run by ``execute_batch``."""
    consumer = StreamConsumer(redis, [keys.events(0)], "daemon", "d1", block_ms=10)
    await consumer.ensure_groups()
    await redis.xadd(keys.events(0), {"event": "{}"})
    entries = await consumer.read()
    job = a_job("job-c")
    stop = StopParticipant(command_id="c1", job_id="job-c", participant="server", worker="s")
    bus = Bus(redis, keys)
    batch: Batch = []
    bus.queue_commands(batch, [stop])
    bus.queue_updates(batch, [(job, "submitted")])
    consumer.queue_ack(batch, entries)
    replies = await execute_batch(redis, batch)
    assert replies[-1] == 1  # XACK
    assert len(await rows(redis, keys.commands("s"))) == 1
    assert len(await rows(redis, keys.updates)) == 1
    assert await consumer.pending_count() == 0


async def test_registration_announces_the_role_and_unregistering_ends_liveness(
        redis: Redis, keys: Keys) -> None:
    bus = Bus(redis, keys)
    await bus.register_worker("w1", "client", ttl_s=5)
    [(_, fields)] = await rows(redis, keys.control)
    assert fields == {b"type": b"worker_registered", b"worker": b"w1", b"role": b"client"}
    await bus.unregister_worker("w1")
    assert await bus.alive_workers() == {}
    assert await bus.alive_workers([]) == {}
