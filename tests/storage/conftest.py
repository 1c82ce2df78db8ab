"""Backends for the object-store contract suite: memory, a directory, and real S3 (rclone)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import s3_client, unique

from orchestrator.storage import (
    BaseObjectStore,
    FileObjectStore,
    MemoryObjectStore,
    open_object_store,
)
from orchestrator.storage.s3 import S3ObjectStore

from .support import s3_store

Corrupter = Callable[[str, bytes], Awaitable[None]]


@pytest.fixture(params=["memory", "file", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend name under test."""
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[BaseObjectStore]:
    """A fresh, empty store of the parametrized backend."""
    if backend == "memory":
        name = unique("mem")
        opened: Any = open_object_store(f"memory://{name}")
        yield opened
        await opened.close()
        MemoryObjectStore.reset(name)
    elif backend == "file":
        opened = open_object_store((tmp_path / "objects").as_uri())
        yield opened
        await opened.close()
    else:
        s3_env = request.getfixturevalue("s3_env")
        async with s3_store(s3_env, page_size=7) as opened:
            yield opened


@pytest.fixture
def corrupt(store: BaseObjectStore, request: pytest.FixtureRequest) -> Corrupter:
    """Replace an object's bytes behind the store's back, keeping its recorded sha256."""

    async def do(key: str, data: bytes) -> None:
        if isinstance(store, MemoryObjectStore):
            store.corrupt(key, data)
        elif isinstance(store, FileObjectStore):
            path = store.root / key
            with path.open("r+b") as handle:  # same inode: the sidecar still matches it
                handle.truncate(0)
                handle.write(data)
        else:
            assert isinstance(store, S3ObjectStore)
            s3_env = request.getfixturevalue("s3_env")
            client = s3_client(s3_env)
            full = store.prefix + key
            old = client.head_object(Bucket=store.bucket, Key=full)["Metadata"]
            client.put_object(Bucket=store.bucket, Key=full, Body=data, Metadata=old)

    return do
