"""Flower messages on the orchestrator's wire: Flower's protobuf serde both ways (never
pickle), the notices that carry only a key and a sha256, rounds, node ids and the npz of a
model's arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.common.constant import ErrorCode
from flwr.supercore.task_identity import TaskIdentity

from orchestrator.errors import WorkloadError
from workers.local import LocalHub
from workers.sdk import WorkloadContext, WorkloadResult
from workers.workloads.flower import records, wire


@pytest.fixture(autouse=True)
def task_identity() -> None:
    """What Flower's runtime sets before a ServerApp makes messages."""
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 42
    TaskIdentity.node_id = 1


def _train_message() -> Message:
    w, b = np.arange(6, dtype=np.float64).reshape(2, 3), np.array([0.5])
    content = RecordDict({
        "arrays": ArrayRecord({"w": Array(w), "b": Array(b)}),
        "config": ConfigRecord({"server-round": 3, "lr": 0.25}),
        "metrics": MetricRecord({"loss": 0.5, "num-examples": 10}),
    })
    return Message(content=content, dst_node_id=wire.node_id("client-1"), message_type="train")


def test_a_message_survives_the_protobuf_round_trip_with_its_id() -> None:
    sent = _train_message()
    got = wire.decode(wire.encode(sent, "m-1"), what="test")
    assert got.metadata.message_id == "m-1"
    assert got.metadata.dst_node_id == 1001 and got.metadata.run_id == 42
    assert got.metadata.message_type == "train"
    arrays = got.content.array_records["arrays"]
    assert np.array_equal(arrays["w"].numpy(), np.arange(6.0).reshape(2, 3))
    assert np.array_equal(arrays["b"].numpy(), [0.5])
    assert dict(got.content["config"]) == {"server-round": 3, "lr": 0.25}
    assert dict(got.content["metrics"]) == {"loss": 0.5, "num-examples": 10}
    assert wire.message_round(got) == 3 and wire.phase(got) == "train"


def test_a_reply_refers_to_the_id_it_was_pushed_with() -> None:
    request = wire.decode(wire.encode(_train_message(), "m-2"), what="test")
    reply = Message(RecordDict({"metrics": MetricRecord({"loss": 0.1})}), reply_to=request)
    got = wire.decode(wire.encode(reply, "r-2"), what="test")
    assert got.metadata.reply_to_message_id == "m-2"
    assert got.metadata.src_node_id == 1001 and got.metadata.dst_node_id == 1
    assert records.reply_metrics(got, "train") == {"train_loss": 0.1}


def test_an_error_reply_round_trips_with_its_code_and_reason() -> None:
    error = Error(code=ErrorCode.NODE_UNAVAILABLE, reason="client-1 is gone")
    reply = wire.error_reply(_train_message(), "m-3", error)
    got = wire.decode(wire.encode(reply, "r-3"), what="test")
    assert got.has_error() and not got.has_content()
    assert got.error.code == ErrorCode.NODE_UNAVAILABLE and got.error.reason == "client-1 is gone"
    assert got.metadata.reply_to_message_id == "m-3" and got.metadata.src_node_id == 1001


def test_bytes_that_are_not_a_flower_message_are_refused() -> None:
    with pytest.raises(WorkloadError, match="not a Flower message"):
        wire.decode(b"\x80\x04\x95 a pickle, say", what="object k")


def test_rounds_come_from_server_round_or_a_legacy_group_id() -> None:
    plain = Message(RecordDict(), dst_node_id=1000, message_type="query")
    legacy = Message(RecordDict(), dst_node_id=1000, message_type="train", group_id="7")
    assert wire.message_round(plain) is None
    assert wire.message_round(legacy) == 7


def test_node_ids_are_the_client_indexes_above_the_reserved_ones() -> None:
    assert [wire.node_id(f"client-{i}") for i in range(3)] == [1000, 1001, 1002]
    assert wire.flower_run_id("job-a") == wire.flower_run_id("job-a") != wire.flower_run_id("b")
    assert 0 < wire.flower_run_id("job-a") < 2**63


def test_the_global_arrays_become_an_npz_loaded_without_pickle() -> None:
    arrays = records.first_arrays([_train_message()])
    assert arrays is not None
    with np.load(io.BytesIO(records.arrays_to_npz(arrays)), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["b", "w"]
        assert np.array_equal(npz["w"], np.arange(6.0).reshape(2, 3))


async def _idle(ctx: WorkloadContext) -> WorkloadResult:  # (never run: contexts only)
    return WorkloadResult()


async def test_a_notice_carries_only_the_key_and_sha256_and_is_checked() -> None:
    with LocalHub(_idle, clients=1) as hub:
        ctx = hub.context("server")
        notice = await wire.put_message(ctx, wire.MESSAGE, _train_message(), message_id="m-4",
                                        refers_to="m-4", round_=3)
        assert set(notice) == {"type", "id", "key", "sha256", "round"}
        assert notice["key"] in hub.store  # the payload is in the object store
        got = await wire.fetch_message(hub.context("client-0"), notice)
        assert got.metadata.message_id == "m-4"
        with pytest.raises(WorkloadError, match="matching key and sha256"):
            await wire.fetch_message(ctx, {**notice, "sha256": "0" * 64})
