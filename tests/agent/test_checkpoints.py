"""Checkpoints through the real agent: S3 objects, checkpoint.saved after upload, failures."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest
from helpers import s3_client, unique

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.core.status import ErrorCode, Role
from orchestrator.errors import StorageError, StorageUnavailableError
from orchestrator.storage import MemoryObjectStore, ObjectInfo, ObjectStore
from orchestrator.storage.s3 import S3ObjectStore
from tests.agent.support import FakeDaemon, RegisterWorkload, new_id, running_agent
from tests.storage.support import s3_store as open_s3_store
from workers.sdk import WorkloadContext, WorkloadResult


@pytest.fixture
async def s3_store(s3_env: dict[str, str]) -> AsyncIterator[S3ObjectStore]:
    async with open_s3_store(s3_env, unique("agent")) as store:
        yield store


async def test_fedavg_job_runs_on_agents_with_checkpoints_in_s3(
    redis: Redis, keys: Keys, s3_store: S3ObjectStore, daemon: FakeDaemon,
    s3_env: dict[str, str],
) -> None:
    rounds, clients = 3, 3
    job_id = new_id("fedavg")
    peers = ["server", *(f"client-{i}" for i in range(clients))]
    async with (
        running_agent(redis, keys, s3_store, name=new_id("srv")) as server,
        running_agent(redis, keys, s3_store, name=new_id("cli"), role=Role.CLIENT,
                      capacity=2) as client_a,
        running_agent(redis, keys, s3_store, name=new_id("cli"), role=Role.CLIENT) as client_b,
    ):
        workers = [client_a, client_a, client_b]
        starts = [
            await daemon.start(
                server.config.name, job_id=job_id, workload="fedavg", rounds=rounds,
                peers=peers, config={"seed": 7, "round_timeout_s": 30},
                client_count=clients, min_clients=clients, heartbeat_interval_s=0.5,
            )
        ]
        for i in range(clients):
            starts.append(
                await daemon.start(
                    workers[i].config.name, job_id=job_id, participant=f"client-{i}",
                    role=Role.CLIENT, workload="fedavg", rounds=rounds, peers=peers,
                    config={"seed": 7, "epochs": 2}, client_index=i, client_count=clients,
                    min_clients=clients, heartbeat_interval_s=0.5,
                )
            )
        ends = [await daemon.wait_terminal(s, timeout_s=60) for s in starts]
    assert [e.type for e in ends] == ["participant.finished"] * (clients + 1), ends

    for participant in peers:
        events = daemon.of(job_id, participant)
        metrics = {e.round: e.metrics for e in events if e.type == "round.metrics"}
        assert sorted(metrics) == list(range(1, rounds + 1)), (participant, metrics)
        assert all({"loss", "accuracy"} <= set(m) for m in metrics.values())
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs)
    server_events = daemon.of(job_id, "server")
    assert [e.round for e in server_events if e.type == "round.started"] == [1, 2, 3]
    assert server_events[-1].type == "participant.finished"
    saved = [e for e in server_events if e.type == "checkpoint.saved"]
    # one checkpoint per round, each saved once; the last round's is the final one
    assert sorted(s.round for s in saved) == list(range(1, rounds + 1))
    assert all(server_events.index(s) < len(server_events) - 1 for s in saved)
    final = [s for s in saved if s.final]
    assert len(final) == 1 and server_events[-1].final_checkpoint == final[0].key
    assert final[0].key == f"jobs/{job_id}/checkpoints/{rounds}/server.npz"
    assert final[0].round == rounds
    assert metrics_accuracy(server_events, rounds) > 0.4  # 4 classes: chance is 0.25

    # the model trail: each checkpoint's parent is the one saved before it
    by_round = sorted(saved, key=lambda s: s.round)
    assert by_round[0].parent is None
    assert [s.parent for s in by_round[1:]] == [s.key for s in by_round[:-1]]

    client = s3_client(s3_env)
    prefix = s3_store.prefix
    for event in saved:
        body = client.get_object(Bucket=s3_env["bucket"], Key=prefix + event.key)["Body"].read()
        assert len(body) == event.size
        assert hashlib.sha256(body).hexdigest() == event.sha256


def metrics_accuracy(events: list[object], round_: int) -> float:
    for event in events:
        if getattr(event, "type", "") == "round.metrics" and event.round == round_:  # type: ignore[attr-defined]
            return float(event.metrics["accuracy"])  # type: ignore[attr-defined]
    raise AssertionError("no metrics")


class RefusingStore(MemoryObjectStore):
    """A memory store whose writes fail: transiently for ``transient_failures`` attempts, or
    for ever."""

    def __init__(self, url: str, *, transient_failures: int | None) -> None:
        super().__init__(url)
        self.transient_failures = transient_failures
        self.attempts = 0

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        self.attempts += 1
        if "checkpoints" in key:
            if self.transient_failures is None:
                raise StorageError("access denied (the bucket refuses writes)")
            if self.attempts <= self.transient_failures:
                raise StorageUnavailableError("slow down")
        return await super()._put(key, data, sha256, meta, overwrite=overwrite)


@pytest.fixture
def saver(register_workload: RegisterWorkload) -> str:
    async def save(ctx: WorkloadContext) -> WorkloadResult:
        key = await ctx.save_checkpoint(1, b"model-bytes", ext="bin")
        final = await ctx.save_checkpoint(2, b"final-bytes", final=True, ext="bin")
        assert key.endswith("/1/server.bin")
        return WorkloadResult(final_checkpoint=final)

    return register_workload(save)


async def test_a_checkpoint_that_cannot_be_stored_fails_the_participant(
    redis: Redis, keys: Keys, daemon: FakeDaemon, saver: str
) -> None:
    store = RefusingStore(f"memory://{unique('refusing')}", transient_failures=None)
    async with running_agent(redis, keys, store, upload_backoff_base_s=0.01) as agent:
        start = await daemon.start(agent.config.name, workload=saver)
        failed = await daemon.wait_terminal(start)
    assert failed.type == "participant.failed"
    assert failed.code == ErrorCode.CHECKPOINT_FAILED
    assert "could not be stored" in failed.message and "access denied" in failed.message
    assert "checkpoint.saved" not in daemon.types(start.job_id)


async def test_transient_store_failures_only_delay_checkpoints(
    redis: Redis, keys: Keys, daemon: FakeDaemon, saver: str
) -> None:
    store = RefusingStore(f"memory://{unique('flaky')}", transient_failures=3)
    async with running_agent(
        redis, keys, store, upload_backoff_base_s=0.01, upload_backoff_max_s=0.05
    ) as agent:
        start = await daemon.start(agent.config.name, workload=saver)
        finished = await daemon.wait_terminal(start)
    assert finished.type == "participant.finished"
    types = daemon.types(start.job_id)
    assert types.count("checkpoint.saved") == 2
    assert types[-1] == "participant.finished"
    assert finished.final_checkpoint == f"jobs/{start.job_id}/checkpoints/2/server.bin"
    assert await store.get_data(finished.final_checkpoint) == b"final-bytes"


async def test_peer_messages_and_blobs_between_agents(
    redis: Redis, keys: Keys, memory_store: ObjectStore, daemon: FakeDaemon,
    register_workload: RegisterWorkload,
) -> None:
    seen: dict[str, object] = {}

    async def pingpong(ctx: WorkloadContext) -> WorkloadResult:
        if ctx.participant == "server":
            key = await ctx.put_blob("hello.bin", b"x" * 100_000)
            await ctx.send("client-0", {"blob": key, "n": 1})
            reply = await ctx.receive(timeout_s=10)
            seen["server"] = (reply.sender, reply.body)
            await anyio.sleep(0.2)
            extra = await ctx.receive(timeout_s=0)  # already there: no wait needed
            seen["extra"] = extra.body
            with pytest.raises(TimeoutError):
                await ctx.receive(timeout_s=0.2)
        else:
            message = await ctx.receive(timeout_s=10)
            data = await ctx.get_blob(message.body["blob"])
            await ctx.send("server", {"size": len(data)})
            await ctx.send("server", {"extra": [1, 2]})
            seen["client"] = message.sender
        return WorkloadResult()

    name = register_workload(pingpong)
    job_id = new_id("job")
    peers = ["server", "client-0"]
    async with (
        running_agent(redis, keys, memory_store) as server,
        running_agent(redis, keys, memory_store, role=Role.CLIENT) as client,
    ):
        # the client starts late: the message waits in its mailbox
        s = await daemon.start(server.config.name, job_id=job_id, workload=name, peers=peers)
        await daemon.wait_type(s, "participant.started")
        await anyio.sleep(0.3)
        c = await daemon.start(client.config.name, job_id=job_id, participant="client-0",
                               role=Role.CLIENT, workload=name, peers=peers)
        ends = [await daemon.wait_terminal(x) for x in (s, c)]
    assert [e.type for e in ends] == ["participant.finished"] * 2, ends
    assert seen == {
        "client": "server",
        "server": ("client-0", {"size": 100_000}),
        "extra": {"extra": [1, 2]},
    }
