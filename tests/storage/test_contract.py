"""One contract suite for every object-store backend (memory, file, real S3 via rclone)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from orchestrator.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from orchestrator.storage import BaseObjectStore
from orchestrator.storage.hashing import HASH_INLINE_MAX_BYTES, sha256_hex_async

from .conftest import Corrupter
from .support import sha


async def test_create_then_get_data_meta_and_both(store: BaseObjectStore) -> None:
    info = await store.create("a/b.bin", b"hello", {"round": "3", "kind": "weights"})
    assert (info.key, info.size, info.sha256) == ("a/b.bin", 5, sha(b"hello"))
    assert await store.get_data("a/b.bin") == b"hello"
    meta = await store.get_meta("a/b.bin")
    assert meta.size == 5
    assert meta.sha256 == sha(b"hello")
    assert meta.meta == {"round": "3", "kind": "weights"}
    assert meta.last_modified.tzinfo is not None
    data, both = await store.get("a/b.bin")
    assert data == b"hello"
    assert both.sha256 == sha(b"hello")
    assert both.meta == meta.meta
    assert await store.exists("a/b.bin")
    assert not await store.exists("a/c.bin")


async def test_empty_object(store: BaseObjectStore) -> None:
    info = await store.create("empty", b"")
    assert (info.size, info.sha256) == (0, sha(b""))
    assert await store.get_data("empty") == b""


async def test_create_refuses_overwrite_unless_asked(store: BaseObjectStore) -> None:
    await store.create("k", b"one", {"v": "1"})
    with pytest.raises(ObjectExistsError):
        await store.create("k", b"two")
    assert await store.get_data("k") == b"one"
    info = await store.create("k", b"two", {"v": "2"}, overwrite=True)
    assert info.sha256 == sha(b"two")
    assert await store.get_data("k") == b"two"
    assert (await store.get_meta("k")).meta == {"v": "2"}


async def test_missing_objects_raise_not_found(store: BaseObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError):
        await store.get_data("nope")
    with pytest.raises(ObjectNotFoundError):
        await store.get_meta("nope")
    with pytest.raises(ObjectNotFoundError):
        await store.update_data("nope", b"x")
    with pytest.raises(ObjectNotFoundError):
        await store.update_meta("nope", {"a": "b"})
    with pytest.raises(ObjectNotFoundError):
        await store.delete("nope")
    with pytest.raises(ObjectNotFoundError):
        async for _ in store.open_stream("nope"):
            pass
    await store.delete("nope", missing_ok=True)


async def test_update_data_keeps_meta_and_rehashes(store: BaseObjectStore) -> None:
    await store.create("u", b"old", {"owner": "site-1"})
    info = await store.update_data("u", b"new bytes")
    assert info.sha256 == sha(b"new bytes")
    assert await store.get_data("u") == b"new bytes"
    meta = await store.get_meta("u")
    assert (meta.size, meta.sha256, meta.meta) == (9, sha(b"new bytes"), {"owner": "site-1"})


async def test_update_meta_merge_and_replace(store: BaseObjectStore) -> None:
    await store.create("m", b"payload", {"a": "1", "b": "2"})
    merged = await store.update_meta("m", {"b": "20", "c": "3"})
    assert merged.meta == {"a": "1", "b": "20", "c": "3"}
    assert (await store.get_meta("m")).meta == {"a": "1", "b": "20", "c": "3"}
    replaced = await store.update_meta("m", {"z": "9"}, replace=True)
    assert replaced.meta == {"z": "9"}
    after = await store.get_meta("m")
    assert after.meta == {"z": "9"}
    assert after.sha256 == sha(b"payload")
    assert await store.get_data("m") == b"payload"


async def test_list_with_prefix(store: BaseObjectStore) -> None:
    for key in ["jobs/j1/a", "jobs/j1/b", "jobs/j10/c", "jobs/j2/d", "other"]:
        await store.create(key, key.encode(), {"k": "v"})
    assert [i.key for i in await store.list("jobs/j1/")] == ["jobs/j1/a", "jobs/j1/b"]
    assert [i.key for i in await store.list("jobs/j1")] == [
        "jobs/j1/a",
        "jobs/j1/b",
        "jobs/j10/c",
    ]
    everything = await store.list()
    assert [i.key for i in everything] == sorted(
        ["jobs/j1/a", "jobs/j1/b", "jobs/j10/c", "jobs/j2/d", "other"]
    )
    for info in everything:
        assert info.sha256 == sha(info.key.encode())
        assert info.size == len(info.key)
        assert info.meta == {"k": "v"}
    assert await store.list_keys("jobs/j2") == ["jobs/j2/d"]
    assert await store.list("missing/") == []


async def test_list_pages_through_many_keys(store: BaseObjectStore) -> None:
    # The S3 fixture uses page_size=7, so 30 keys take five ListObjectsV2 pages.
    keys = [f"many/{i:03d}" for i in range(30)]
    for key in keys:
        await store.create(key, b"x")
    assert await store.list_keys("many/") == keys
    assert [i.key for i in await store.list("many/")] == keys


async def test_delete(store: BaseObjectStore) -> None:
    await store.create("d/x", b"1")
    await store.create("d/y", b"2")
    await store.delete("d/x")
    assert not await store.exists("d/x")
    assert await store.list_keys("d/") == ["d/y"]
    with pytest.raises(ObjectNotFoundError):
        await store.delete("d/x")
    await store.create("d/x", b"again")  # a deleted key can be created again
    assert await store.get_data("d/x") == b"again"


async def test_streaming_read_and_download(store: BaseObjectStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: above HASH_INLINE_MAX_BYTES, hashed in a thread
    await store.create("s/blob", data)
    assert await store.get_data("s/blob") == data
    chunks = [c async for c in store.open_stream("s/blob", chunk_size=100_000)]
    assert b"".join(chunks) == data
    assert len(chunks) >= 10
    assert max(len(c) for c in chunks) <= 100_000
    target = tmp_path / "down.bin"
    info = await store.download_to("s/blob", target)
    assert target.read_bytes() == data
    assert info.sha256 == sha(data)


async def test_create_from_stream_and_upload_file(store: BaseObjectStore, tmp_path: Path) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for i in range(10):
            yield bytes([i]) * 1000

    info = await store.create_from_stream("st/x", gen(), {"src": "stream"})
    expected = b"".join(bytes([i]) * 1000 for i in range(10))
    assert (info.size, info.sha256) == (len(expected), sha(expected))
    assert await store.get_data("st/x") == expected
    with pytest.raises(ObjectExistsError):
        await store.create_from_stream("st/x", gen())
    path = tmp_path / "f.bin"
    path.write_bytes(b"file content")
    info = await store.upload_file("st/f", path, {"src": "file"})
    assert info.sha256 == sha(b"file content")
    assert (await store.get_meta("st/f")).meta == {"src": "file"}
    with pytest.raises(ObjectExistsError):
        await store.upload_file("st/f", path)


async def test_corruption_is_detected(store: BaseObjectStore, corrupt: Corrupter) -> None:
    await store.create("c/obj", b"good bytes")
    await corrupt("c/obj", b"evil bytes")
    with pytest.raises(IntegrityError):
        await store.get_data("c/obj")
    with pytest.raises(IntegrityError):
        await store.get("c/obj")
    with pytest.raises(IntegrityError):
        async for _ in store.open_stream("c/obj", chunk_size=4):
            pass


@pytest.mark.parametrize(
    "key", ["", "/abs", "a/../b", "..", "a//b", "a/.hidden", "a/", "x" * 1025, "a\\b", "a\nb"]
)
async def test_invalid_keys_are_refused(store: BaseObjectStore, key: str) -> None:
    with pytest.raises(StorageError, match="key"):
        await store.create(key, b"x")


@pytest.mark.parametrize(
    "meta",
    [
        {"sha256": "x"},
        {"mtime": "1"},
        {"Upper": "x"},
        {"ok": "caf\u00e9"},
        {"a b": "x"},
        {"k": "v" * 3000},
    ],
)
async def test_invalid_meta_is_refused(store: BaseObjectStore, meta: dict[str, str]) -> None:
    with pytest.raises(StorageError, match="metadata"):
        await store.create("k", b"x", meta)
    assert not await store.exists("k")


async def test_presign_support(store: BaseObjectStore, backend: str) -> None:
    await store.create("p", b"x")
    if backend == "s3":
        assert (await store.presign_get("p", 60)).url.startswith("http")
    else:
        with pytest.raises(StorageError, match=f"not supported by {backend}://"):
            await store.presign_get("p", 60)
        with pytest.raises(StorageError, match=f"not supported by {backend}://"):
            await store.presign_put("p", sha(b"x"), 60)


async def test_closed_store_refuses(store: BaseObjectStore) -> None:
    await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.get_data("k")
    await store.close()  # idempotent


async def test_large_chunks_are_hashed_in_a_worker_thread(store: BaseObjectStore,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole payloads and streamed chunks above ``HASH_INLINE_MAX_BYTES`` leave the event loop
    free (heartbeats keep running): their hashing goes to ``anyio.to_thread``; small ones
    are hashed inline."""
    hashed_in_threads: list[int] = []
    run_sync = anyio.to_thread.run_sync

    async def spy(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(func, "__name__", "") in ("sha256_hex", "update"):
            hashed_in_threads.append(len(args[0]))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    small, large = b"s" * 1000, bytes(range(256)) * 8192  # 1 KB, 2 MiB
    assert await sha256_hex_async(small) == sha(small) and hashed_in_threads == []
    assert await sha256_hex_async(large) == sha(large) and hashed_in_threads == [len(large)]
    hashed_in_threads.clear()
    await store.create("h/large", large)
    hashed_in_threads.clear()
    chunks = [c async for c in store.open_stream("h/large", chunk_size=len(large))]
    assert b"".join(chunks) == large
    # Exactly the chunks above the limit went to a thread (S3 may deliver smaller ones).
    big = [len(c) for c in chunks if len(c) > HASH_INLINE_MAX_BYTES]
    assert sorted(hashed_in_threads) == sorted(big)
    hashed_in_threads.clear()
    assert b"".join([c async for c in store.open_stream("h/large", chunk_size=64 * 1024)]) \
        == large
    assert hashed_in_threads == [], "small chunks are hashed inline"
