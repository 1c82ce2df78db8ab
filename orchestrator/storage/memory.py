"""``memory://name`` — an in-process twin of the object store for tests and demos.

Stores with the same name share their objects within a process (like a bucket), so a test can
open the same URL twice. :meth:`MemoryObjectStore.corrupt` is the test hook for integrity checks.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from orchestrator.storage.base import BaseObjectStore
from orchestrator.storage.hashing import sha256_update
from orchestrator.storage.port import ObjectInfo


@dataclass
class _Entry:
    data: bytes
    info: ObjectInfo


_BUCKETS: dict[str, dict[str, _Entry]] = {}


class MemoryObjectStore(BaseObjectStore):
    """Objects kept in a dict shared by every store opened with the same name."""

    scheme = "memory"

    def __init__(self, name: str = "default") -> None:
        super().__init__(f"memory://{name}")
        self.name = name
        self._objects = _BUCKETS.setdefault(name, {})

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> MemoryObjectStore:
        """Build from ``memory://name`` (no other options)."""
        if endpoint_url is not None:
            raise StorageError("memory:// takes no endpoint_url")
        name = url.removeprefix("memory://").strip("/") or "default"
        return cls(name)

    @staticmethod
    def reset(name: str | None = None) -> None:
        """Forget the objects of one named store, or of all of them."""
        if name is None:
            _BUCKETS.clear()
        else:
            _BUCKETS.pop(name, None)

    def corrupt(self, key: str, data: bytes) -> None:
        """Test hook: replace the stored bytes but keep the recorded sha256 and size."""
        self._entry(key).data = data

    def _entry(self, key: str) -> _Entry:
        try:
            return self._objects[key]
        except KeyError:
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None

    def _store(self, key: str, data: bytes, sha256: str, meta: dict[str, str]) -> ObjectInfo:
        info = ObjectInfo(
            key=key, size=len(data), sha256=sha256, meta=meta, last_modified=datetime.now(UTC)
        )
        self._objects[key] = _Entry(data, info)
        return info

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        if not overwrite and key in self._objects:
            raise ObjectExistsError(f"object {key!r} already exists in {self.url}")
        return self._store(key, data, sha256, meta)

    async def _put_stream(
        self, key: str, chunks: AsyncIterable[bytes], meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        buffer = bytearray()
        digest = hashlib.sha256()
        async for chunk in chunks:
            buffer += chunk
            await sha256_update(digest, chunk)
        return await self._put(key, bytes(buffer), digest.hexdigest(), meta, overwrite=overwrite)

    async def _head(self, key: str) -> ObjectInfo:
        return self._entry(key).info

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        entry = self._entry(key)
        return entry.data, entry.info

    async def _iter(self, key: str, chunk_size: int, info: ObjectInfo) -> AsyncIterator[bytes]:
        data = self._entry(key).data
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    async def _set_meta(self, key: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        entry = self._entry(key)
        entry.info = entry.info.model_copy(
            update={"meta": meta, "last_modified": datetime.now(UTC)}
        )
        return entry.info

    async def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        return [e.info for k, e in self._objects.items() if k.startswith(prefix)]

    async def _delete(self, key: str) -> None:
        self._entry(key)
        del self._objects[key]
