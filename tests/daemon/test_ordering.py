"""Duplicated, late and reordered events; cancel racing success."""

from __future__ import annotations

import random
import uuid
from typing import Any

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import (
    COMMAND_ADAPTER,
    Event,
    Heartbeat,
    JobStatus,
    ParticipantFinished,
    ParticipantStarted,
    RoundMetrics,
    RoundStarted,
    StartParticipant,
)
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    assert_history_sane,
    daemon_running,
    fast_options,
    job_spec,
    rows,
    run_secret_for,
    running,
    signed,
    wait_finished,
    wait_for_job,
    workers_for,
)


async def start_commands(redis: Redis, keys: Keys, workers: list[str]) -> dict[str,
                                                                                StartParticipant]:
    """Read every start command sent to these workers (as a worker group would)."""
    found: dict[str, StartParticipant] = {}
    with anyio.fail_after(10):
        while len(found) < len(workers):
            for worker in workers:
                for _, fields in await rows(redis, keys.commands(worker)):
                    cmd = COMMAND_ADAPTER.validate_json(fields[b"command"])
                    if isinstance(cmd, StartParticipant):
                        found[cmd.participant] = cmd
            await anyio.sleep(0.02)
    return found


def ev(kind: type[Any], cmd: StartParticipant, seq: int, **fields: Any) -> Event:
    event: Event = signed(kind(event_id=uuid.uuid4().hex, job_id=cmd.job_id,
                               participant=cmd.participant, worker=cmd.worker, seq=seq,
                               **fields), cmd.run_secret)
    return event


@pytest.mark.fault("duplicated, late and reordered events", invariants=(2, 3))
async def test_duplicated_late_and_reordered_events_give_the_same_result(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    names = ["srv", "cli0", "cli1"]
    for i, name in enumerate(names):
        await bus.register_worker(name, "server" if i == 0 else "client", ttl_s=30, info={})
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await bus.submit(job_spec("shuffled", clients=2, rounds=2).model_dump_json())
        commands = await start_commands(redis, keys, names)
        events: list[Event] = []
        for pid, cmd in commands.items():
            events.append(ev(ParticipantStarted, cmd, 0))
            if pid == "server":
                events += [ev(RoundStarted, cmd, 1, round=1), ev(RoundStarted, cmd, 3, round=2)]
            events += [ev(RoundMetrics, cmd, 2, round=1, metrics={"loss": 0.5}),
                       ev(RoundMetrics, cmd, 4, round=2, metrics={"loss": 0.25}),
                       ev(Heartbeat, cmd, 5)]
        finished = [ev(ParticipantFinished, commands[p], 9) for p in ("client-0", "client-1")]
        server_done = ev(ParticipantFinished, commands["server"], 9)
        rng = random.Random(7)
        late = events + finished
        rng.shuffle(late)
        # Reordered and duplicated: everything twice, in random order, then the server's end.
        await bus.publish_events(late + list(reversed(late)))
        await bus.publish_events([server_done, server_done])
        job = await wait_finished(store, "shuffled")
        versions_then = job.version
        # Late resends of everything, after the end, change nothing.
        await bus.publish_events([*late, server_done])
        await anyio.sleep(0.4)
        after = await store.get("shuffled")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert_history_sane(after)
    assert after.history == job.history
    assert after.status is job.status
    assert after.version == versions_then, "resent events wrote nothing"
    assert after.round == 2
    rows = await store.metrics("shuffled")
    assert {(r["participant"], r["round"]): r["metrics"]["loss"] for r in rows} == {
        (p, r): {1: 0.5, 2: 0.25}[r] for p in commands for r in (1, 2)}
    assert all(after.participants[p].metrics_round == 2 for p in commands)


async def test_cancel_applied_first_wins_over_a_late_success(redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1, modes={"srv": "hang", "cli0": "hang"})
    bus = Bus(redis, keys)
    async with (daemon_running(store, redis, fast_options(keys.namespace)),
                running(*(w.run for w in workers))):
        await bus.submit(job_spec("cxl", clients=1).model_dump_json())
        await wait_for_job(store, "cxl", lambda j: j.participants["server"].state == "started")
        await bus.request_cancel("cxl", reason="stop it", requested_by="test")
        job = await wait_finished(store, "cxl")
        server_cmd = next(iter(workers[0].started_runs))
        assert server_cmd
        late = signed(ParticipantFinished(event_id="late-success", job_id="cxl",
                                          participant="server", worker="srv", seq=10_000),
                      run_secret_for("cxl", "server", server_cmd))
        await bus.publish_event(late)
        await anyio.sleep(0.3)
        after = await store.get("cxl")
    assert job.status is JobStatus.FINISHED_CANCELLED
    assert after.status is JobStatus.FINISHED_CANCELLED, "FINISHED never changes"
    assert after.history == job.history
    assert_history_sane(after)
    assert {s.participant for s in workers[0].stops + workers[1].stops} == {"server", "client-0"}
    assert job.history[-1].reason == "cancelled: all participants stopped"


async def test_success_applied_first_stays_despite_a_later_cancel(redis: Redis,
                                                                  keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1)
    bus = Bus(redis, keys)
    async with (daemon_running(store, redis, fast_options(keys.namespace)),
                running(*(w.run for w in workers))):
        await bus.submit(job_spec("ok-then-cxl", clients=1).model_dump_json())
        job = await wait_finished(store, "ok-then-cxl")
        await bus.request_cancel("ok-then-cxl")
        await anyio.sleep(0.3)
        after = await store.get("ok-then-cxl")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert after.status is JobStatus.FINISHED_SUCCESSFULLY
    assert after.history == job.history


@pytest.mark.fault("cancel racing a success", invariants=(1, 2))
async def test_cancel_and_success_in_flight_together_end_in_exactly_one_state(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    for name, role in (("srv", "server"), ("cli0", "client")):
        await bus.register_worker(name, role, ttl_s=30, info={})
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await bus.submit(job_spec("race", clients=1).model_dump_json())
        commands = await start_commands(redis, keys, ["srv", "cli0"])
        await bus.publish_events([ev(ParticipantStarted, c, 0) for c in commands.values()])
        await wait_for_job(store, "race", lambda j: j.participants["server"].state == "started")
        pipe = redis.pipeline(transaction=False)
        pipe.xadd(keys.events_for("race"),
                  {b"event": ev(ParticipantFinished, commands["server"], 5).model_dump_json()})
        pipe.xadd(keys.control, {b"type": b"cancel", b"job_id": b"race", b"reason": b"race"})
        await pipe.execute()
        job = await wait_finished(store, "race")
        await anyio.sleep(0.3)
        after = await store.get("race")
    assert job.status in (JobStatus.FINISHED_SUCCESSFULLY, JobStatus.FINISHED_CANCELLED)
    assert after.status is job.status
    assert_history_sane(after)
    assert sum(h.to_status.is_terminal for h in after.history) == 1


async def test_forged_and_unknown_events_are_ignored(redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    workers = workers_for(redis, keys, clients=1, modes={"srv": "hang", "cli0": "hang"})
    bus = Bus(redis, keys)
    async with (daemon_running(store, redis, fast_options(keys.namespace)) as daemon,
                running(*(w.run for w in workers))):
        await bus.submit(job_spec("forged", clients=1).model_dump_json())
        await wait_for_job(store, "forged", lambda j: j.participants["server"].state == "started")
        forged = ParticipantFinished(event_id="forged", job_id="forged", participant="server",
                                     worker="mallory", seq=99)
        stranger = ParticipantFinished(event_id="stranger", job_id="forged",
                                       participant="client-7", worker="cli0", seq=99)
        unknown = ParticipantFinished(event_id="nojob", job_id="no-such-job",
                                      participant="server", worker="srv", seq=1)
        await bus.publish_events([forged, stranger, unknown])
        await anyio.sleep(0.4)
        job = await store.get("forged")
        ignored = daemon.stats.events_ignored
        await bus.request_cancel("forged")
        await wait_finished(store, "forged")
    assert job.status is JobStatus.IN_PROGRESS
    assert job.participants["server"].state == "started"
    assert ignored >= 3
