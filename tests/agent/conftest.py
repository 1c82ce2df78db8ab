"""Fixtures of the worker-agent tests: a Redis client and keys per test, stores, a fake daemon."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from helpers import unique

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.storage import MemoryObjectStore, ObjectStore, open_object_store
from tests.agent.support import FakeDaemon, RegisterWorkload, new_id
from workers.registry import WorkloadFn, unregister, workload


@pytest.fixture
async def memory_store() -> AsyncIterator[ObjectStore]:
    name = unique("agent")
    store = open_object_store(f"memory://{name}")
    yield store
    await store.close()
    MemoryObjectStore.reset(name)


@pytest.fixture
def daemon(redis: Redis, keys: Keys) -> FakeDaemon:
    return FakeDaemon(redis, keys)


@pytest.fixture
def register_workload() -> Iterator[RegisterWorkload]:
    """Register test workloads under unique names; they are unregistered after the test."""
    names: list[str] = []

    def register(fn: WorkloadFn) -> str:
        name = new_id(fn.__name__)
        workload(name)(fn)
        names.append(name)
        return name

    yield register
    for name in names:
        unregister(name)
