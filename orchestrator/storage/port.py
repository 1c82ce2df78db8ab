"""The object-store port: one Protocol and the models it speaks in.

Every object carries the sha256 (hex) of its bytes next to the user metadata; reads recompute it
and raise :class:`~orchestrator.errors.IntegrityError` on mismatch. The shared implementation is
:class:`~orchestrator.storage.base.BaseObjectStore`; the key and metadata rules every backend
applies are in :mod:`orchestrator.storage.validation`.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from pydantic import BaseModel, ConfigDict

from orchestrator.storage.hashing import sha256_hex

DEFAULT_CHUNK_SIZE = 1024 * 1024

LocalPath = str | os.PathLike[str]
"""A local file path: ``str``, ``pathlib.Path`` or ``anyio.Path``."""


class ObjectInfo(BaseModel):
    """What a store knows about one object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    size: int
    sha256: str
    meta: dict[str, str]
    last_modified: datetime


class PresignedRequest(BaseModel):
    """A URL a plain HTTP client can use without credentials; send ``headers`` unchanged."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    url: str
    headers: dict[str, str]
    expires_s: int


@runtime_checkable
class ObjectStore(Protocol):
    """Async object storage (NVFlare's storage spec plus streaming and presigned URLs)."""

    url: str

    async def create(
        self,
        key: str,
        data: bytes,
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store ``data``; raise ObjectExistsError if the key exists and not ``overwrite``."""
        ...

    async def create_from_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store the concatenated chunks without holding them all in memory."""
        ...

    async def upload_file(
        self,
        key: str,
        path: LocalPath,
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ObjectInfo:
        """Store a local file's bytes, streaming."""
        ...

    async def get_data(self, key: str, *, sha256: str | None = None) -> bytes:
        """Return the bytes, verified against the recorded sha256 — or against ``sha256`` when
        the caller knows it (the manifest, a blob key), which also reads an object whose
        metadata the store lost."""
        ...

    async def get_meta(self, key: str) -> ObjectInfo:
        """Return key, size, sha256, user metadata and last-modified time."""
        ...

    async def stat(self, key: str) -> ObjectInfo:
        """Like :meth:`get_meta`, but a sha256 the store lost is ``""`` instead of an error."""
        ...

    async def get(self, key: str, *, sha256: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return verified bytes and their info (see :meth:`get_data` for ``sha256``)."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        ...

    async def update_data(self, key: str, data: bytes) -> ObjectInfo:
        """Replace the bytes of an existing object, keeping its user metadata."""
        ...

    async def update_meta(
        self, key: str, meta: Mapping[str, str], *, replace: bool = False
    ) -> ObjectInfo:
        """Merge ``meta`` into the user metadata (or replace it); sha256 is kept."""
        ...

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        ...

    async def list_keys(self, prefix: str = "") -> builtins.list[str]:
        """Keys starting with ``prefix``, sorted (cheaper than :meth:`list` on S3)."""
        ...

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove the object; ObjectNotFoundError if absent unless ``missing_ok``."""
        ...

    def open_stream(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, sha256: str | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the bytes in chunks; raise IntegrityError at the end on a sha256 mismatch
        (against ``sha256``, e.g. the manifest's, when given: then lost metadata is no error).

        Wrap in ``contextlib.aclosing`` when you may stop early, so the connection is released.
        """
        ...

    async def download_to(
        self, key: str, path: LocalPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Stream the object into ``path`` (atomically, sha256-checked; against ``sha256``
        when given)."""
        ...

    async def presign_get(self, key: str, expires_s: int = 3600) -> PresignedRequest:
        """A GET URL usable without credentials (S3 only)."""
        ...

    async def presign_put(
        self,
        key: str,
        sha256: str,
        expires_s: int = 3600,
        meta: Mapping[str, str] | None = None,
    ) -> PresignedRequest:
        """A PUT URL for bytes whose sha256 is known in advance (S3 only)."""
        ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


__all__ = [  # sha256_hex: re-exported, workers/local.py imports it from here
    "DEFAULT_CHUNK_SIZE",
    "LocalPath",
    "ObjectInfo",
    "ObjectStore",
    "PresignedRequest",
    "sha256_hex",
]
