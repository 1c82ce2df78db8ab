"""The registry, the SDK helpers and the in-memory context's contract."""

from __future__ import annotations

import hashlib
import math

import anyio
import pytest

from orchestrator.core.status import Role
from orchestrator.errors import ObjectNotFoundError, UnknownWorkloadError, WorkloadError
from workers.local import LocalClient, LocalHub, run_local_job
from workers.registry import get_workload, unregister, workload, workload_names
from workers.sdk import (
    MAX_MESSAGE_BYTES,
    PeerMessageError,
    WorkloadContext,
    WorkloadResult,
    config_float,
    config_int,
    encode_message_body,
)

# --- registry ----------------------------------------------------------------------------------


def test_builtins_are_registered() -> None:
    assert {"noop", "sleep", "fail", "fedavg"} <= set(workload_names())
    assert workload_names() == sorted(workload_names())
    assert callable(get_workload("fedavg"))


def test_unknown_workload_lists_the_known_names() -> None:
    # (installed plugins, e.g. the custom-workload example, are listed among them)
    with pytest.raises(UnknownWorkloadError,
                       match=r"'nope'; known workloads: (.+, )?fail, fedavg, (.+, )?noop, sleep"):
        get_workload("nope")


def test_registering_names() -> None:
    async def first(ctx: WorkloadContext) -> WorkloadResult | None:
        return None

    async def second(ctx: WorkloadContext) -> WorkloadResult | None:
        return WorkloadResult()

    try:
        workload("test-twice")(first)
        workload("test-twice")(first)  # the same function again is fine (module reload)
        with pytest.raises(ValueError, match="already registered"):
            workload("test-twice")(second)
        workload("test-twice", replace=True)(second)
        assert get_workload("test-twice") is second
    finally:
        unregister("test-twice")
    assert "test-twice" not in workload_names()
    with pytest.raises(ValueError, match="invalid workload name"):
        workload("no spaces allowed")


# --- SDK helpers -------------------------------------------------------------------------------


def test_message_bodies_must_be_small_json_objects() -> None:
    body = {"type": "train", "round": 1, "pair": (1, 2)}
    assert encode_message_body(body) == {"type": "train", "round": 1, "pair": [1, 2]}
    with pytest.raises(PeerMessageError, match="JSON-serialisable"):
        encode_message_body({"data": b"bytes"})
    with pytest.raises(PeerMessageError, match="JSON-serialisable"):
        encode_message_body({"loss": math.nan})
    with pytest.raises(PeerMessageError, match="JSON object"):
        encode_message_body([1, 2])  # type: ignore[arg-type]
    with pytest.raises(PeerMessageError, match="put_blob"):
        encode_message_body({"blob": "x" * MAX_MESSAGE_BYTES})
    assert issubclass(PeerMessageError, WorkloadError)


def test_config_readers() -> None:
    config = {"lr": 0.1, "epochs": 3, "whole": 4.0, "flag": True, "text": "x"}
    assert config_float(config, "lr", 1.0) == 0.1
    assert config_float(config, "missing", 2.0) == 2.0
    assert config_int(config, "epochs", 1) == 3
    assert config_int(config, "whole", 1) == 4
    for name in ("flag", "text"):
        with pytest.raises(WorkloadError, match=name):
            config_float(config, name, 1.0)
        with pytest.raises(WorkloadError, match=name):
            config_int(config, name, 1)
    with pytest.raises(WorkloadError, match=">= 5"):
        config_int(config, "epochs", 1, minimum=5)
    with pytest.raises(WorkloadError, match="integer"):
        config_int(config, "lr", 1)


# --- the in-memory context ---------------------------------------------------------------------


def _hub(**kwargs: object) -> LocalHub:
    clients = [LocalClient({"a": 1}, data_path="/data/c0.npz"), LocalClient()]
    return LocalHub("noop", clients=clients, rounds=3, min_clients=1, job_id="job-1", **kwargs)  # type: ignore[arg-type]


def test_local_context_identity() -> None:
    with _hub(model="softmax", server_config={"seed": 3}) as hub:
        _check_identity(hub)


def _check_identity(hub: LocalHub) -> None:
    server, client = hub.context("server"), hub.context("client-0")
    assert isinstance(server, WorkloadContext)
    assert (server.job_id, server.participant, server.role) == ("job-1", "server", Role.SERVER)
    assert (client.participant, client.role, client.client_index) == ("client-0", Role.CLIENT, 0)
    assert server.client_index is None
    assert server.config == {"seed": 3}
    assert client.config == {"a": 1}
    assert client.data_path == "/data/c0.npz"
    assert list(server.peers) == ["server", "client-0", "client-1"]
    assert (server.rounds, server.client_count, server.min_clients) == (3, 2, 1)
    assert server.model == "softmax"
    assert server.run_id != client.run_id
    with pytest.raises(TypeError):
        server.config["seed"] = 4  # type: ignore[index]


async def test_local_messages_blobs_and_checkpoints() -> None:
    with _hub() as hub:
        await _exchange(hub)


async def _exchange(hub: LocalHub) -> None:
    server, client = hub.context("server"), hub.context("client-0")
    key = await server.put_blob("global.npz", b"model bytes")
    await server.send("client-0", {"type": "train", "model": key})
    message = await client.receive(timeout_s=1)
    assert (message.sender, message.body) == ("server", {"type": "train", "model": key})
    assert await client.get_blob(message.body["model"]) == b"model bytes"
    with pytest.raises(TimeoutError):
        await client.receive(timeout_s=0.01)
    with pytest.raises(PeerMessageError, match="unknown peer 'client-9'"):
        await server.send("client-9", {})
    with pytest.raises(PeerMessageError, match="itself"):
        await server.send("server", {})
    with pytest.raises(PeerMessageError, match="limit"):
        await server.send("client-1", {"x": "y" * (MAX_MESSAGE_BYTES + 1)})

    checkpoint = await server.save_checkpoint(2, b"round two")
    final = await server.save_checkpoint(3, b"final", final=True)
    # the same keys as on a real worker (orchestrator.storage.checkpoint_key)
    assert checkpoint == "jobs/job-1/checkpoints/2/server.npz"
    assert final == "jobs/job-1/checkpoints/3/server.npz"
    assert await client.load_checkpoint(final) == b"final"
    assert [r.round for r in hub.checkpoint_records] == [2, 3]
    assert hub.checkpoint_records[1].sha256 == hashlib.sha256(b"final").hexdigest()
    with pytest.raises(ObjectNotFoundError):
        await client.load_checkpoint("jobs/job-1/checkpoints/nope.npz")
    with pytest.raises(WorkloadError, match="blob name"):
        await server.put_blob("../escape", b"")
    with pytest.raises(WorkloadError, match="round"):
        await server.save_checkpoint(-1, b"x")
    with pytest.raises(WorkloadError, match="extension"):
        await server.save_checkpoint(1, b"x", ext="../npz")
    with pytest.raises(WorkloadError, match="never overwritten"):
        await server.save_checkpoint(3, b"other final", final=True)
    assert len(hub.checkpoint_records) == 2
    assert await server.save_checkpoint(3, b"final", final=True) == final  # same bytes: fine


async def test_local_metrics_are_validated_and_merged() -> None:
    with _hub() as hub:
        await _metrics(hub)


async def _metrics(hub: LocalHub) -> None:
    server = hub.context("server")
    await server.report_metrics(1, {"loss": 1.0})
    await server.report_metrics(1, {"accuracy": 0.5, "loss": 0.9})
    assert hub.metrics == {"server": {1: {"loss": 0.9, "accuracy": 0.5}}}
    with pytest.raises(WorkloadError, match="finite"):
        await server.report_metrics(2, {"loss": math.inf})
    with pytest.raises(WorkloadError, match="number"):
        await server.report_metrics(2, {"loss": "low"})  # type: ignore[dict-item]
    # rounds are checked as on a real worker (RedisWorkloadContext)
    with pytest.raises(WorkloadError, match="round"):
        await server.report_metrics(-1, {"loss": 1.0})
    with pytest.raises(WorkloadError, match="round"):
        await server.round_started(0)
    assert hub.metrics == {"server": {1: {"loss": 0.9, "accuracy": 0.5}}}
    assert hub.rounds_started == []


async def test_stop_wakes_a_pending_receive() -> None:
    async def waiter(ctx: WorkloadContext) -> WorkloadResult | None:
        await ctx.receive()
        return None

    hub = LocalHub(waiter, clients=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(hub.run)
        await anyio.sleep(0.05)
        assert not hub.context("server").cancelled()
        hub.request_stop("server")
        hub.kill("client-0")
    assert hub.outcomes["server"].state == "stopped"
    assert hub.outcomes["client-0"].state == "killed"


async def test_run_local_job_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="min_clients"):
        await run_local_job("noop", clients=1, min_clients=2)
    with pytest.raises(ValueError, match="rounds"):
        await run_local_job("noop", rounds=0)
    with pytest.raises(ValueError, match="unknown participants"):
        await run_local_job("noop", clients=1, kill_at_round={"client-5": 1})
    with pytest.raises(UnknownWorkloadError):
        await run_local_job("missing-workload")


async def test_run_local_job_times_out() -> None:
    with pytest.raises(TimeoutError):
        await run_local_job("sleep", server_config={"seconds": 5}, clients=0, timeout_s=0.1)
