"""Participants prove who they are: forged events change nothing and leave a record each.

Events are written straight to the events streams with the right worker names, as a process
with write access to Redis but without the run secrets could: without a MAC, with a MAC made
with a wrong secret, with a genuine event's MAC over altered fields, and every daemon-only
type. None changes the job; each leaves a refused-event record; the job then ends as its real
participants make it end.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import (
    COMMAND_ADAPTER,
    CancelRequested,
    CheckpointSaved,
    DeadlineExpired,
    Event,
    Heartbeat,
    JobDispatched,
    JobStatus,
    JobUnschedulable,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
    StartParticipant,
)
from orchestrator.core.auth import mailbox_key, run_secret
from orchestrator.daemon.reconcile import recovery_commands
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    TEST_DAEMON_KEY,
    assert_history_sane,
    daemon_running,
    fast_options,
    job_spec,
    rows,
    signed,
    wait_finished,
    wait_for_job,
)

NAMES = {"server": "srv", "client-0": "cli0"}


async def start_commands(redis: Redis, keys: Keys) -> list[StartParticipant]:
    """Every start command on the job's two workers' command streams, in order."""
    found = []
    for worker in NAMES.values():
        for _, fields in await rows(redis, keys.commands(worker)):
            command = COMMAND_ADAPTER.validate_json(fields[b"command"])
            if isinstance(command, StartParticipant):
                found.append(command)
    return found


async def wait_starts(redis: Redis, keys: Keys, count: int) -> dict[str, StartParticipant]:
    with anyio.fail_after(10):
        while len(found := await start_commands(redis, keys)) < count:
            await anyio.sleep(0.02)
    return {c.participant: c for c in found}


def genuine(kind: type[Any], cmd: StartParticipant, seq: int, **fields: Any) -> Event:
    event: Event = signed(kind(event_id=uuid.uuid4().hex, job_id=cmd.job_id,
                               participant=cmd.participant, worker=cmd.worker, seq=seq,
                               **fields), cmd.run_secret)
    return event


def forgeries(job_id: str, cmds: dict[str, StartParticipant]) -> list[tuple[Event, str]]:
    """(event, expected refusal reason) for every kind, with the right worker names."""
    srv, cli = cmds["server"], cmds["client-0"]
    wrong = run_secret(b"not the daemon key, but long", job_id, "server", srv.run_id)
    stale = run_secret(TEST_DAEMON_KEY, job_id, "client-0", "another-run")

    def ev(kind: type[Any], cmd: StartParticipant, **fields: Any) -> Any:
        return kind(event_id=uuid.uuid4().hex, job_id=job_id, participant=cmd.participant,
                    worker=cmd.worker, seq=10**9, **fields)

    checkpoint = {"round": 1, "key": "k", "size": 1, "sha256": "0" * 64, "final": True}
    tampered = genuine(RoundMetrics, cli, 10**9, round=1, metrics={"loss": 0.5})
    tampered = tampered.model_copy(update={"metrics": {"loss": 99.0}})
    return [
        (ev(ParticipantStarted, cli), "refused: no MAC"),
        (signed(ev(Heartbeat, srv, round=7), wrong), "refused: bad MAC"),
        (signed(ev(RoundStarted, srv, round=5), wrong), "refused: bad MAC"),
        (tampered, "refused: bad MAC"),
        (signed(ev(CheckpointSaved, srv, **checkpoint), stale), "refused: bad MAC"),
        (ev(ParticipantFinished, srv), "refused: no MAC"),
        (signed(ev(ParticipantFailed, cli, message="forged"), stale), "refused: bad MAC"),
        (signed(ev(ParticipantStopped, cli, reason="forged"), wrong), "refused: bad MAC"),
        (JobDispatched(event_id="forged-d", job_id=job_id, assignments={"server": "x"}),
         "refused: forbidden_event"),
        (DeadlineExpired(event_id="forged-x", job_id=job_id, kind="job"),
         "refused: forbidden_event"),
        (JobUnschedulable(event_id="forged-u", job_id=job_id, participant="server",
                          worker="srv", message="forged"), "refused: forbidden_event"),
        (CancelRequested(event_id="forged-c", job_id=job_id), "refused: forbidden_event"),
    ]



async def register_workers(bus: Bus) -> None:
    """The job's workers alive (registered; nobody reads their commands)."""
    for pid, name in NAMES.items():
        await bus.register_worker(name, "server" if pid == "server" else "client", ttl_s=30,
                                  info={})

@pytest.mark.fault("forged events of every kind", invariants=(1, 2, 3, 8))
async def test_forged_events_of_every_kind_change_nothing_and_are_each_recorded(
        redis: Redis, keys: Keys) -> None:
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    await register_workers(bus)
    async with daemon_running(store, redis, fast_options(keys.namespace)) as daemon:
        await bus.submit(job_spec("trust", clients=1, rounds=1).model_dump_json())
        cmds = await wait_starts(redis, keys, 2)
        assert all(c.run_secret and c.mailbox_key for c in cmds.values())
        await bus.publish_events([genuine(ParticipantStarted, cmds["server"], 1)])
        before = await wait_for_job(store, "trust",
                                    lambda j: j.participants["server"].state == "started")
        forged = forgeries("trust", cmds)
        entry_ids = [await redis.xadd(keys.events_for("trust"),
                                      {"event": event.model_dump_json()})
                     for event, _ in forged]
        with anyio.fail_after(10):
            while daemon.stats.events_refused < len(forged):
                await anyio.sleep(0.02)
        await anyio.sleep(0.2)
        after_forgery = await store.get("trust")
        refused = await store.refused_events(job_id="trust")
        metrics_then = await store.metrics("trust")
        # The real participants now end the job.
        srv, cli = cmds["server"], cmds["client-0"]
        await bus.publish_events([
            genuine(ParticipantStarted, cli, 1),
            genuine(RoundStarted, srv, 2, round=1),
            genuine(RoundMetrics, cli, 3, round=1, metrics={"loss": 0.25}),
            genuine(ParticipantFinished, cli, 4)])
        await wait_for_job(store, "trust", lambda j: j.participants["client-0"].state
                           == "finished")
        done = genuine(ParticipantFinished, srv, 5)
        await bus.publish_event(done)
        job = await wait_finished(store, "trust")
        # A replayed genuine event changes nothing (and is no forgery).
        await bus.publish_event(done)
        await anyio.sleep(0.3)
        replayed = await store.get("trust")
        stats = daemon.stats
    assert after_forgery.version == before.version, "no forged event changed the job"
    assert after_forgery.status is JobStatus.IN_PROGRESS
    assert after_forgery.participants == before.participants
    assert metrics_then == [] and await store.checkpoints("trust") == []
    assert stats.events_refused == len(forged)
    assert len(refused) == len(forged)
    by_entry = {r.entry_id: r for r in refused}
    assert set(by_entry) == {i.decode() if isinstance(i, bytes) else i for i in entry_ids}
    for (event, reason), entry_id in zip(forged, entry_ids, strict=True):
        row = by_entry[entry_id.decode() if isinstance(entry_id, bytes) else entry_id]
        assert row.reason == reason, (event.type, row.reason)
        assert (row.event_type, row.event_id, row.job_id) == (event.type, event.event_id,
                                                              "trust")
        assert row.worker == getattr(event, "worker", None)
        assert row.participant == getattr(event, "participant", None)
        assert row.source == keys.events_for("trust")
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY
    assert [(m["participant"], m["metrics"]) for m in await store.metrics("trust")] == [
        ("client-0", {"loss": 0.25})]
    assert_history_sane(job)
    assert replayed.version == job.version
    assert len(await store.refused_events()) == len(forged)


async def test_reconciliation_resends_starts_with_the_same_secrets(redis: Redis,
                                                                   keys: Keys) -> None:
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    await register_workers(bus)
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await bus.submit(job_spec("again", clients=1).model_dump_json())
        first = await wait_starts(redis, keys, 2)
    job = await store.get("again")
    assert {c.command_id for c in recovery_commands(job)} == {c.command_id
                                                             for c in first.values()}
    # A second replica (same key) restarting finds both participants still assigned.
    async with daemon_running(store, redis, fast_options(keys.namespace, consumer="d2")):
        again = await wait_starts(redis, keys, 4)
    everything = await start_commands(redis, keys)
    assert len(everything) == 4
    for pid, cmd in first.items():
        resent = [c for c in everything if c.participant == pid]
        assert len(resent) == 2
        assert resent[0] == resent[1], "the re-sent start is the same command, secret and all"
        assert cmd.run_secret == run_secret(TEST_DAEMON_KEY, "again", pid, cmd.run_id)
        assert cmd.mailbox_key == mailbox_key(TEST_DAEMON_KEY, "again")
    assert again.keys() == first.keys()


@pytest.mark.fault("a daemon with another key", invariants=(3, 8))
async def test_a_daemon_with_another_key_refuses_the_events_of_runs_it_did_not_seal(
        redis: Redis, keys: Keys) -> None:
    """Replicas must share the key: the events of a run sealed under one key are refused by a
    daemon holding another (here: a restart without the configured key)."""
    store = MemoryJobStore()
    bus = Bus(redis, keys)
    await register_workers(bus)
    async with daemon_running(store, redis, fast_options(keys.namespace)):
        await bus.submit(job_spec("rekeyed", clients=1).model_dump_json())
        cmds = await wait_starts(redis, keys, 2)
    other = fast_options(keys.namespace, daemon_key=b"a different key entirely")
    async with daemon_running(store, redis, other) as daemon:
        await bus.publish_events([genuine(ParticipantStarted, cmds["server"], 1)])
        with anyio.fail_after(10):
            while daemon.stats.events_refused < 1:
                await anyio.sleep(0.02)
    job = await store.get("rekeyed")
    assert job.participants["server"].state == "assigned"
    (row,) = await store.refused_events(job_id="rekeyed")
    assert row.reason == "refused: bad MAC"
