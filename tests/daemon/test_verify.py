"""The checkpoint verifier on its own: verdicts per event, deferral, no I/O without checkpoints.

The end-to-end cases (a real daemon, real rclone S3) are in test_checkpoint_verify.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from orchestrator.core import CheckpointSaved, Event, Heartbeat, RoundMetrics
from orchestrator.daemon.verify import (
    MISSING,
    WRONG_SHA256,
    WRONG_SIZE,
    CheckpointVerifier,
)
from orchestrator.errors import StorageUnavailableError
from orchestrator.storage import MemoryObjectStore, ObjectInfo
from tests.helpers import unique


class CountingStore(MemoryObjectStore):
    """A memory store that counts HEADs, can lose its sha256s or be unreachable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.stats = 0
        self.lost_sha256 = False
        self.down = False

    async def _stat(self, key: str) -> ObjectInfo:
        self.stats += 1
        if self.down:
            raise StorageUnavailableError("cannot reach the store")
        info = await super()._stat(key)
        return info.model_copy(update={"sha256": ""}) if self.lost_sha256 else info


@pytest.fixture
async def store() -> AsyncIterator[CountingStore]:
    name = unique("verify")
    opened = CountingStore(name)
    yield opened
    await opened.close()
    MemoryObjectStore.reset(name)


def saved(key: str, data: bytes, **changes: object) -> CheckpointSaved:
    fields: dict[str, object] = {"event_id": unique("e"), "job_id": "j", "participant": "server",
                                 "worker": "srv", "round": 1, "key": key, "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(), **changes}
    return CheckpointSaved.model_validate(fields)


async def test_a_batch_without_checkpoints_costs_no_store_call(store: CountingStore) -> None:
    verifier = CheckpointVerifier(store)
    events: list[Event] = [
        Heartbeat(event_id="h", job_id="j", participant="server", worker="srv", seq=1),
        RoundMetrics(event_id="m", job_id="j", participant="server", worker="srv", round=1,
                     metrics={"loss": 1.0})]
    verdicts = await verifier(events)
    assert (verdicts.refused, verdicts.deferred, store.stats) == ({}, set(), 0)
    assert verdicts.check(None) is None  # nothing refused: the MAC check alone


async def test_verdicts_name_what_differs(store: CountingStore) -> None:
    await store.create("jobs/j/checkpoints/1/server.npz", b"model")
    good = saved("jobs/j/checkpoints/1/server.npz", b"model")
    events: list[Event] = [
        good,
        saved("jobs/j/checkpoints/1/other.npz", b"model"),
        saved("jobs/j/checkpoints/1/server.npz", b"model", size=6),
        saved("jobs/j/checkpoints/1/server.npz", b"model", sha256="0" * 64),
    ]
    verdicts = await CheckpointVerifier(store, concurrency=2)(events)
    assert verdicts.deferred == set()
    assert id(good) not in verdicts.refused
    reasons = [verdicts.refused[id(e)] for e in events[1:]]
    assert reasons[0].startswith(MISSING)
    assert reasons[1] == (f"{WRONG_SIZE}: announced 6 bytes, the object "
                          "jobs/j/checkpoints/1/server.npz has 5")
    assert reasons[2].startswith(f"{WRONG_SHA256}: announced {'0' * 64}")


async def test_lost_metadata_is_made_up_for_by_hashing_the_bytes(store: CountingStore) -> None:
    await store.create("jobs/j/checkpoints/1/server.npz", b"model")
    store.lost_sha256 = True
    right = saved("jobs/j/checkpoints/1/server.npz", b"model")
    wrong = saved("jobs/j/checkpoints/1/server.npz", b"model", sha256="1" * 64)
    verifier = CheckpointVerifier(store)
    verdicts = await verifier([right, wrong])
    assert id(right) not in verdicts.refused
    assert verdicts.refused[id(wrong)].startswith(WRONG_SHA256)
    assert verifier.hashed == 2
    # past the hashing bound, existence and size alone (and a warning)
    bounded = CheckpointVerifier(store, hash_max_bytes=2)
    verdicts = await bounded([wrong])
    assert verdicts.refused == {} and bounded.unhashed == 1


async def test_an_unreachable_store_defers_instead_of_refusing(store: CountingStore) -> None:
    store.down = True
    event = saved("jobs/j/checkpoints/1/server.npz", b"model")
    verdicts = await CheckpointVerifier(store)([event])
    assert verdicts.deferred == {id(event)}
    assert verdicts.refused == {}


async def test_after_a_deferral_the_verifier_pauses_its_probes(store: CountingStore) -> None:
    await store.create("jobs/j/checkpoints/1/server.npz", b"model")
    store.down = True
    verifier = CheckpointVerifier(store, concurrency=1, pause_s=60)
    first = saved("jobs/j/checkpoints/1/server.npz", b"model")
    assert (await verifier([first])).deferred == {id(first)}
    assert store.stats == 1
    store.down = False  # back, but the pause holds: deferred at once, no probe
    second = saved("jobs/j/checkpoints/1/server.npz", b"model")
    assert (await verifier([second])).deferred == {id(second)}
    assert store.stats == 1
    verifier.pause_s = 0
    verifier._paused_until = 0.0
    third = saved("jobs/j/checkpoints/1/server.npz", b"model")
    verdicts = await verifier([third])
    assert (verdicts.deferred, verdicts.refused, store.stats) == (set(), {}, 2)
