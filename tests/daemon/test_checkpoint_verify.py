"""Verified checkpoints: a real daemon checks every announced checkpoint in a real S3 (rclone).

The job's participants are played by the test (as in test_trust.py): it reads the start
commands and writes correctly MACed events itself, so a ``checkpoint.saved`` can lie about
an object — name one that does not exist, announce the wrong size or the wrong sha256 —
while being perfectly authentic. Each lie is refused and recorded, no manifest row is written
for it, and the job ends as the truthful events make it end. Then the S3 server is restarted
(rclone forgets object metadata): the daemon still verifies by hashing the bytes, and
downloads verify against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.bus import Bus, Redis
from orchestrator.bus.keys import Keys
from orchestrator.cli.checkpoints import _download
from orchestrator.core import (
    CheckpointSaved,
    JobStatus,
    ParticipantFinished,
    ParticipantStarted,
    Role,
)
from orchestrator.daemon import Daemon
from orchestrator.errors import IntegrityError
from orchestrator.storage import ObjectStore
from orchestrator.storage.checkpoints import checkpoint_key
from orchestrator.store import MemoryJobStore
from tests.agent.support import running_agent
from tests.daemon.harness import (
    assert_history_sane,
    daemon_pending,
    dead_letters,
    fast_options,
    wait_finished,
    wait_for_job,
)
from tests.daemon.test_trust import genuine, register_workers, wait_starts
from tests.helpers import s3_client, unique
from tests.storage.support import BUCKET, OwnS3, s3_store


@pytest.fixture
async def objects(own_s3: OwnS3) -> AsyncIterator[ObjectStore]:
    async with s3_store(own_s3.env, unique("verify")) as opened:
        yield opened


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def wait_refused(daemon: Daemon, count: int) -> None:
    with anyio.fail_after(10):
        while daemon.stats.events_refused < count:
            await anyio.sleep(0.02)


@asynccontextmanager
async def running_daemon(store: MemoryJobStore, redis: Redis, keys: Keys,
                         objects: ObjectStore | None, **options: Any) -> AsyncIterator[Daemon]:
    daemon = Daemon(store, redis, fast_options(keys.namespace, **options), objects=objects)
    async with anyio.create_task_group() as tg:
        await tg.start(daemon.run)
        try:
            yield daemon
        finally:
            daemon.stop()


@pytest.mark.fault("lying checkpoint.saved: missing, wrong size, wrong sha256",
                   invariants=(1, 3, 6, 8))
async def test_checkpoints_that_do_not_match_their_object_are_refused_and_recorded(
        redis: Redis, keys: Keys, objects: ObjectStore) -> None:
    store, bus, job_id = MemoryJobStore(), Bus(redis, keys), unique("ckpt")
    await register_workers(bus)
    model = b"the final model" * 100
    other = b"some other bytes" * 100
    async with running_daemon(store, redis, keys, objects) as daemon:
        await bus.submit(_spec(job_id))
        cmds = await wait_starts(redis, keys, 2)
        srv, cli = cmds["server"], cmds["client-0"]
        await bus.publish_events([genuine(ParticipantStarted, srv, 1),
                                  genuine(ParticipantStarted, cli, 1)])
        await wait_for_job(store, job_id, lambda j: all(
            p.state == "started" for p in j.participants.values()))
        key = checkpoint_key(job_id, 1, "server")
        info = await objects.create(key, model)
        assert info.sha256 == sha(model)
        lies = [
            (genuine(CheckpointSaved, srv, 2, round=1, key=f"jobs/{job_id}/checkpoints/1/x.npz",
                     size=len(model), sha256=sha(model), final=True),
             "refused: checkpoint missing: no object "),
            (genuine(CheckpointSaved, srv, 3, round=1, key=key, size=len(model) + 1,
                     sha256=sha(model), final=True),
             f"refused: checkpoint size mismatch: announced {len(model) + 1} bytes"),
            (genuine(CheckpointSaved, srv, 4, round=1, key=key, size=len(model),
                     sha256=sha(other), final=True),
             f"refused: checkpoint sha256 mismatch: announced {sha(other)}, the object {key} "
             f"has {sha(model)}"),
            (genuine(CheckpointSaved, srv, 5, round=1, key="../../etc/passwd",
                     size=len(model), sha256=sha(model), final=True),
             "refused: checkpoint key invalid"),
        ]
        before = await store.get(job_id)
        await bus.publish_events([event for event, _ in lies])
        # the server says it is done, naming a final checkpoint no truthful event announced
        await bus.publish_event(genuine(ParticipantFinished, cli, 6))
        await bus.publish_event(genuine(ParticipantFinished, srv, 7, final_checkpoint=key))
        await wait_refused(daemon, len(lies))
        finalizing = await wait_for_job(
            store, job_id, lambda j: j.participants["server"].state == "finished")
        assert finalizing.status is JobStatus.IN_PROGRESS, "no verified final checkpoint yet"
        assert finalizing.final_checkpoint is None and finalizing.latest_checkpoint is None
        assert await store.checkpoints(job_id) == []
        refused = await store.refused_events(job_id=job_id)
        # the truthful announcement now ends the job
        await bus.publish_event(genuine(CheckpointSaved, srv, 8, round=1, key=key,
                                        size=len(model), sha256=sha(model), final=True))
        job = await wait_finished(store, job_id)
        stats = daemon.stats
        assert daemon.verifier is not None and daemon.verifier.checked == len(lies) + 1
    assert before.status is JobStatus.IN_PROGRESS
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    assert_history_sane(job)
    assert stats.events_refused == len(lies)
    by_event = {r.event_id: r for r in refused}
    assert len(refused) == len(lies)
    for event, reason in lies:
        row = by_event[event.event_id]
        assert row.reason.startswith(reason), row.reason
        assert (row.event_type, row.participant, row.worker) == (
            "checkpoint.saved", "server", srv.worker)
    (manifest,) = await store.checkpoints(job_id)
    assert (manifest["key"], manifest["size"], manifest["sha256"], manifest["final"]) == (
        key, len(model), sha(model), True)
    assert job.final_checkpoint is not None and job.final_checkpoint.key == key


@pytest.mark.fault("S3 restarted (metadata lost): verify and download by the manifest",
                   invariants=(6,))
async def test_after_an_s3_restart_the_daemon_hashes_and_downloads_verify_by_the_manifest(
        redis: Redis, keys: Keys, own_s3: OwnS3, objects: ObjectStore, tmp_path: Path) -> None:
    store, bus, job_id = MemoryJobStore(), Bus(redis, keys), unique("restart")
    await register_workers(bus)
    first, final = b"round one" * 1000, b"round two, final" * 1000
    async with running_daemon(store, redis, keys, objects) as daemon:
        await bus.submit(_spec(job_id, rounds=2))
        cmds = await wait_starts(redis, keys, 2)
        srv, cli = cmds["server"], cmds["client-0"]
        key1, key2 = checkpoint_key(job_id, 1, "server"), checkpoint_key(job_id, 2, "server")
        await objects.create(key1, first)
        await objects.create(key2, final)
        await bus.publish_event(genuine(CheckpointSaved, srv, 1, round=1, key=key1,
                                        size=len(first), sha256=sha(first)))
        await wait_for_job(store, job_id, lambda j: j.latest_checkpoint is not None)
        await own_s3.stop()
        await own_s3.start_again()  # rclone forgets the objects' metadata (their sha256)
        with pytest.raises(IntegrityError, match="no sha256 metadata"):
            await objects.get_data(key2)
        # announced after the restart: the daemon hashes the bytes to verify
        lie = genuine(CheckpointSaved, srv, 2, round=2, key=key2, size=len(final),
                      sha256=sha(first), final=True)
        await bus.publish_event(lie)
        await wait_refused(daemon, 1)
        await bus.publish_events([
            genuine(CheckpointSaved, srv, 3, round=2, key=key2, size=len(final),
                    sha256=sha(final), final=True),
            genuine(ParticipantFinished, cli, 1),
            genuine(ParticipantFinished, srv, 4, final_checkpoint=key2)])
        job = await wait_finished(store, job_id)
        assert daemon.verifier is not None and daemon.verifier.hashed == 2
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    (refused,) = await store.refused_events(job_id=job_id)
    assert refused.event_id == lie.event_id
    assert refused.reason.startswith(
        f"refused: checkpoint sha256 mismatch: announced {sha(first)}, the object {key2} has "
        f"{sha(final)}")
    rows = sorted(await store.checkpoints(job_id), key=lambda r: r["round"])
    assert [(r["key"], r["sha256"]) for r in rows] == [(key1, sha(first)), (key2, sha(final))]
    # downloads verify against the manifest (the CLI's own download step), metadata or not
    for row in rows:
        assert await _download(objects, dict(row), tmp_path) is None
    assert (tmp_path / key1).read_bytes() == first
    assert (tmp_path / key2).read_bytes() == final
    assert await objects.get_data(key1, sha256=sha(first)) == first
    # an object replaced behind the manifest's back: a clear error naming both digests
    await objects.create(key1, b"tampered", overwrite=True)
    problem = await _download(objects, dict(rows[0]), tmp_path / "again")
    assert problem is not None and "does not match the manifest" in problem
    assert sha(first) in problem and sha(b"tampered") in problem
    assert not (tmp_path / "again" / key1).exists()


@pytest.mark.fault("S3 down when a checkpoint is announced: parked, then recorded",
                   invariants=(1, 5, 6))
async def test_a_checkpoint_announced_while_s3_is_down_is_parked_and_recorded_once_it_is_back(
        redis: Redis, keys: Keys, own_s3: OwnS3, objects: ObjectStore) -> None:
    store, bus, job_id = MemoryJobStore(), Bus(redis, keys), unique("parked")
    await register_workers(bus)
    model = b"the model" * 500
    # a reclaim pass that would dead-letter an unheld entry within 5 x 0.5 s
    async with running_daemon(store, redis, keys, objects, reclaim_idle_ms=500) as daemon:
        await bus.submit(_spec(job_id, heartbeat_s=30))  # (the test sends no heartbeats)
        cmds = await wait_starts(redis, keys, 2)
        srv, cli = cmds["server"], cmds["client-0"]
        key = checkpoint_key(job_id, 1, "server")
        await objects.create(key, model)
        await own_s3.stop()
        await bus.publish_events([
            genuine(CheckpointSaved, srv, 1, round=1, key=key, size=len(model),
                    sha256=sha(model), final=True),
            genuine(ParticipantFinished, cli, 1)])
        await wait_for_job(store, job_id, lambda j: j.participants["client-0"].state
                           == "finished")
        assert daemon.verifier is not None and daemon.parked is not None
        with anyio.fail_after(10):
            while daemon.verifier.deferred == 0:
                await anyio.sleep(0.05)
        # longer than the reclaim pass needs to dead-letter it (0.5 s idle, 5 deliveries)
        await anyio.sleep(3.5)
        assert await store.checkpoints(job_id) == []
        assert await daemon_pending(redis, keys.all_event_streams()) == 1, "still pending"
        assert await dead_letters(redis, keys) == []
        await own_s3.start_again()
        await bus.publish_event(genuine(ParticipantFinished, srv, 2, final_checkpoint=key))
        job = await wait_finished(store, job_id, timeout_s=20)
        letters = await dead_letters(redis, keys)
        refused = await store.refused_events(job_id=job_id)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    assert [(r["key"], r["sha256"]) for r in await store.checkpoints(job_id)] == [
        (key, sha(model))]
    assert letters == [] and refused == []


async def test_without_an_object_store_verification_is_off_and_says_so(
        redis: Redis, keys: Keys) -> None:
    store, bus, job_id = MemoryJobStore(), Bus(redis, keys), unique("off")
    await register_workers(bus)
    with capture_logs() as logs:
        daemon = Daemon(store, redis, fast_options(keys.namespace))
    assert daemon.verifier is None
    assert any("checkpoint verification is OFF" in e["event"] and e["log_level"] == "warning"
               for e in logs)
    async with running_daemon(store, redis, keys, None) as daemon:
        await bus.submit(_spec(job_id))
        cmds = await wait_starts(redis, keys, 2)
        await bus.publish_event(genuine(CheckpointSaved, cmds["server"], 1, round=1,
                                        key=f"jobs/{job_id}/checkpoints/1/server.npz",
                                        size=3, sha256="0" * 64))
        job = await wait_for_job(store, job_id, lambda j: j.latest_checkpoint is not None)
    assert job.latest_checkpoint is not None and job.latest_checkpoint.size == 3  # unverified


def _spec(job_id: str, *, rounds: int = 1, heartbeat_s: float = 5) -> str:
    from tests.daemon.harness import job_spec  # noqa: PLC0415

    return job_spec(job_id, clients=1, rounds=rounds, heartbeat_s=heartbeat_s).model_dump_json()


OUTAGE_S = float(os.environ.get("OUTAGE_TEST_S", "4"))
#: The daemon's reclaim idle time in the outage test: the outage lasts 8 of them, more than the
#: 5 deliveries after which an entry nobody held would be dead-lettered.
OUTAGE_RECLAIM_IDLE_MS = 500


@pytest.mark.slow
@pytest.mark.fault("S3 stopped mid-fedavg, real daemon: every manifest row verified",
                   invariants=(1, 6))
async def test_a_fedavg_job_rides_out_an_s3_outage_and_its_manifest_matches_the_objects(
        redis: Redis, keys: Keys, own_s3: OwnS3) -> None:
    jobs, job_id, prefix = MemoryJobStore(), unique("fedavg"), unique("outage")
    rounds, budget_s = 12, max(30.0, 2 * OUTAGE_S)
    server_name, client_names = f"{job_id}-srv", [f"{job_id}-c{i}" for i in range(3)]
    config = {"seed": 3, "round_timeout_s": budget_s + 30}
    spec = {
        "job_id": job_id, "workload": "fedavg", "rounds": rounds,
        "server": {"worker": server_name, "config": config},
        "clients": [{"worker": w, "config": {**config, "samples": 3000, "epochs": 3}}
                    for w in client_names],
        "timeouts": {"heartbeat_s": 5, "start_s": 30, "round_s": budget_s + 60,
                     "job_s": 600},
    }  # fmt: skip
    agent_options: dict[str, Any] = {"storage_retry_s": budget_s}
    async with (
        s3_store(own_s3.env, prefix) as workers_store,
        s3_store(own_s3.env, prefix) as daemon_store,  # the daemon's own client
        # (a checkpoint.saved the daemon cannot verify while S3 is down is parked, and held
        # from the reclaim pass — 0.5 s here, 5 deliveries — until S3 is back)
        running_daemon(jobs, redis, keys, daemon_store,
                       reclaim_idle_ms=OUTAGE_RECLAIM_IDLE_MS) as daemon,
        running_agent(redis, keys, workers_store, name=server_name, **agent_options),
        running_agent(redis, keys, workers_store, name=client_names[0], role=Role.CLIENT,
                      **agent_options),
        running_agent(redis, keys, workers_store, name=client_names[1], role=Role.CLIENT,
                      **agent_options),
        running_agent(redis, keys, workers_store, name=client_names[2], role=Role.CLIENT,
                      **agent_options),
    ):
        await Bus(redis, keys).submit(json.dumps(spec))
        await wait_for_job(jobs, job_id, lambda j: j.round >= 2, timeout_s=60)
        await own_s3.stop()
        during = await jobs.get(job_id)
        assert not during.status.is_terminal, "the job ended before S3 was stopped"
        await anyio.sleep(OUTAGE_S)
        await own_s3.start_again()
        job = await wait_finished(jobs, job_id, timeout_s=budget_s + 120)
        verifier = daemon.verifier
        letters = await dead_letters(redis, keys)
    assert job.status is JobStatus.FINISHED_SUCCESSFULLY, job.error
    assert_history_sane(job)
    rows = sorted(await jobs.checkpoints(job_id), key=lambda r: r["round"])
    assert [r["round"] for r in rows] == list(range(1, rounds + 1))
    assert [r["final"] for r in rows] == [False] * (rounds - 1) + [True]
    assert verifier is not None and verifier.checked >= rounds
    assert letters == [], "nothing was dead-lettered for the outage"
    # every manifest row matches its object, recomputed from the bytes (rclone restarted:
    # the objects uploaded before it have lost their sha256 metadata)
    client = s3_client(own_s3.env)
    for row in rows:
        body = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{row['key']}")["Body"].read()
        assert (len(body), sha(body)) == (row["size"], row["sha256"]), row["key"]
    assert job.final_checkpoint is not None
    assert job.final_checkpoint.key == f"jobs/{job_id}/checkpoints/{rounds}/server.npz"
