"""Replayed events: genuine, correctly MACed entries captured from the events stream and sent
again later change nothing.

What makes a replay harmless (``orchestrator.core.auth``, ``orchestrator.core.machine``):

* the MAC covers the event's canonical bytes, job id, participant, worker, ``seq`` and
  ``event_id`` included, and is made with the secret of one participant *run*
  (job | participant | run id). An entry of one job re-sent as another job's — the same
  participant ids and worker names, a later job — fails its MAC: refused and recorded. A
  participant has one run per job (its run id is set once, at dispatch, and kept by
  reconciliation), so "an earlier run of the same participant" is an earlier job;
* re-sent as is, within the run, it is a duplicate: a participant's state only moves forward,
  liveness only follows a ``seq`` above the highest seen, metrics and manifest rows are keyed
  (job, participant, round). So it changes nothing, and it is not refused: it is authentic;
* re-sent after its job finished, it meets an absorbing FINISHED state.

Eight kinds are replayed each way: started, heartbeat, round.started, round.metrics,
checkpoint.saved, finished, failed, stopped.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.core import (
    COMMAND_ADAPTER,
    CheckpointSaved,
    Heartbeat,
    Job,
    JobStatus,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
    StartParticipant,
)
from orchestrator.daemon import Daemon
from orchestrator.store import MemoryJobStore
from tests.daemon.harness import (
    assert_history_sane,
    daemon_running,
    fast_options,
    job_spec,
    rows,
    wait_finished,
    wait_for_job,
)
from tests.daemon.test_trust import genuine

WORKERS = {"server": "srv", "client-0": "cli0", "client-1": "cli1"}
KINDS = ["participant.started", "participant.heartbeat", "round.started", "round.metrics",
         "checkpoint.saved", "participant.finished", "participant.failed",
         "participant.stopped"]


async def starts_of(redis: Redis, keys: Keys, job_id: str) -> dict[str, StartParticipant]:
    """The start command of each participant of ``job_id`` (waiting for all of them)."""
    with anyio.fail_after(10):
        while True:
            found: dict[str, StartParticipant] = {}
            for worker in WORKERS.values():
                for _, fields in await rows(redis, keys.commands(worker)):
                    command = COMMAND_ADAPTER.validate_json(fields[b"command"])
                    if isinstance(command, StartParticipant) and command.job_id == job_id:
                        found[command.participant] = command
            if len(found) == len(WORKERS):
                return found
            await anyio.sleep(0.02)


async def captured(redis: Redis, keys: Keys, job_id: str) -> dict[str, dict[bytes, bytes]]:
    """The raw entry of each event type of ``job_id`` as it sits in the events stream (the
    first of each type)."""
    found: dict[str, dict[bytes, bytes]] = {}
    for _, fields in await rows(redis, keys.events_for(job_id)):
        kind = json.loads(fields[b"event"])["type"]
        found.setdefault(kind, fields)
    return found


async def settle(daemon: Daemon, seen: int) -> None:
    """Wait until the daemon has handled ``seen`` more events (plus a margin)."""
    with anyio.fail_after(10):
        while daemon.stats.events_seen < seen:
            await anyio.sleep(0.02)
    await anyio.sleep(0.2)


def state(job: Job) -> tuple[Any, ...]:
    """What a replay must not change."""
    return (job.status, job.phase, job.round, job.error, job.participants,
            job.final_checkpoint, job.latest_checkpoint, len(job.history))


async def run_first_job(bus: Bus, store: MemoryJobStore, cmds: dict[str, StartParticipant]
                        ) -> None:
    """Job one's participants speak every kind once: the server runs a round, saves, ends;
    client-0 fails and client-1 stops (``min_clients=0``: the job still succeeds)."""
    srv, c0, c1 = cmds["server"], cmds["client-0"], cmds["client-1"]
    key = f"jobs/{srv.job_id}/checkpoints/1/server.npz"
    await bus.publish_events([
        genuine(ParticipantStarted, srv, 1),
        genuine(Heartbeat, srv, 2, round=1),
        genuine(RoundStarted, srv, 3, round=1),
        genuine(RoundMetrics, srv, 4, round=1, metrics={"loss": 0.5}),
        genuine(CheckpointSaved, srv, 5, round=1, key=key, size=4, sha256="a" * 64,
                final=True),
        genuine(ParticipantStarted, c0, 1),
        genuine(ParticipantFailed, c0, 2, message="its data ran out"),
        genuine(ParticipantStarted, c1, 1),
        genuine(ParticipantStopped, c1, 2, reason="left"),
    ])
    await wait_for_job(store, srv.job_id, lambda j: j.participants["client-1"].state
                       == "stopped")
    await bus.publish_event(genuine(ParticipantFinished, srv, 6, final_checkpoint=key))


@pytest.mark.fault("replayed events of 8 kinds: within the run, into a later job, "
                   "after the end", invariants=(2, 3, 8))
async def test_replayed_events_change_nothing(redis: Redis, keys: Keys) -> None:
    store, bus = MemoryJobStore(), Bus(redis, keys)
    for participant, name in WORKERS.items():
        await bus.register_worker(name, "server" if participant == "server" else "client",
                                  ttl_s=60, info={})
    async with daemon_running(store, redis, fast_options(keys.namespace)) as daemon:
        await bus.submit(job_spec("first", clients=2, rounds=1, min_clients=0).model_dump_json())
        await run_first_job(bus, store, await starts_of(redis, keys, "first"))
        first = await wait_finished(store, "first")
        old = await captured(redis, keys, "first")
        assert sorted(old) == sorted(KINDS)
        first_metrics, first_manifest = await store.metrics("first"), await store.checkpoints(
            "first")

        # a later job of the same workers, participants and ids
        await bus.submit(job_spec("second", clients=2, rounds=1, min_clients=0).model_dump_json())
        cmds = await starts_of(redis, keys, "second")
        srv, c0, c1 = cmds["server"], cmds["client-0"], cmds["client-1"]
        assert srv.run_id != (await store.get("first")).participants["server"].run_id
        await bus.publish_events([
            genuine(ParticipantStarted, srv, 1), genuine(Heartbeat, srv, 2, round=1),
            genuine(RoundStarted, srv, 3, round=1),
            genuine(RoundMetrics, srv, 4, round=1, metrics={"loss": 0.25}),
            genuine(ParticipantStarted, c0, 1), genuine(ParticipantStarted, c1, 1)])
        await wait_for_job(store, "second", lambda j: j.round == 1 and all(
            p.state == "started" for p in j.participants.values()))
        await bus.publish_event(genuine(Heartbeat, srv, 10, round=1))  # the highest seq
        await wait_for_job(store, "second", lambda j: j.participants["server"].last_seq == 10)
        before = await store.get("second")
        seen = daemon.stats.events_seen

        # 1. job one's entries, re-sent as job two's: the MAC fails
        stream = keys.events_for("second")
        for kind in KINDS:
            event = json.loads(old[kind][b"event"])
            event["job_id"] = "second"
            await redis.xadd(stream, {"event": json.dumps(event)})
        # 2. job two's own entries, re-sent within its run: duplicates
        mine = await captured(redis, keys, "second")
        for fields in mine.values():
            await redis.xadd(stream, fields)  # type: ignore[arg-type]
        # 3. job one's entries, re-sent as they were, after it finished
        for kind in KINDS:
            await redis.xadd(keys.events_for("first"), old[kind])  # type: ignore[arg-type]
        await settle(daemon, seen + len(KINDS) + len(mine) + len(KINDS))
        after = await store.get("second")
        first_after = await store.get("first")
        refused = await store.refused_events(job_id="second")
        refused_count = daemon.stats.events_refused

        # the real participants end job two
        key = "jobs/second/checkpoints/1/server.npz"
        await bus.publish_events([
            genuine(ParticipantFinished, c0, 11), genuine(ParticipantFinished, c1, 11),
            genuine(CheckpointSaved, srv, 11, round=1, key=key, size=4, sha256="b" * 64,
                    final=True),
            genuine(ParticipantFinished, srv, 12, final_checkpoint=key)])
        second = await wait_finished(store, "second")
        # 4. and its entries re-sent after the end: absorbed
        seen = daemon.stats.events_seen
        final_entries = await rows(redis, stream)
        for _, fields in final_entries:
            await redis.xadd(stream, fields)  # type: ignore[arg-type]
        await settle(daemon, seen + len(final_entries))
        second_after = await store.get("second")
        second_metrics = await store.metrics("second")

    assert first.status is JobStatus.FINISHED_SUCCESSFULLY, first.error
    assert state(first_after) == state(first), "a replay into a finished job changed it"
    assert [m["metrics"] for m in await store.metrics("first")] == [
        m["metrics"] for m in first_metrics]
    assert [(c["key"], c["sha256"]) for c in await store.checkpoints("first")] == [
        (c["key"], c["sha256"]) for c in first_manifest]
    # within the run: authentic duplicates, absorbed (nothing moved, liveness not refreshed)
    assert state(after) == state(before)
    assert after.participants["server"].last_seen == before.participants["server"].last_seen
    # across jobs: one refusal per kind, recorded with what it claimed
    assert refused_count == len(KINDS)
    assert sorted(str(r.event_type) for r in refused) == sorted(KINDS)
    assert {r.reason for r in refused} == {"refused: bad MAC"}
    assert {(r.participant, r.worker) for r in refused} == {
        ("server", "srv"), ("client-0", "cli0"), ("client-1", "cli1")}
    # job two ended as its real participants made it end, and stayed so
    assert second.status is JobStatus.FINISHED_SUCCESSFULLY, second.error
    assert state(second_after) == state(second)
    assert_history_sane(second_after)
    assert [(m["participant"], m["round"], m["metrics"]) for m in second_metrics] == [
        ("server", 1, {"loss": 0.25})]
