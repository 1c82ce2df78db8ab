"""The object-store port: one Protocol, its models, and the bookkeeping every backend shares.

Theory of operation: :class:`BaseObjectStore` implements the whole public surface once — key and
metadata validation, sha256 computation, overwrite refusal, integrity checks on every read —
and calls a handful of ``_hooks`` that a backend implements (``_put``, ``_head``, ``_read`` …).
Backends translate their own failures into :mod:`orchestrator.errors`; nothing else leaks.

Every object carries the sha256 (hex) of its bytes next to the user metadata; reads recompute it
and raise :class:`~orchestrator.errors.IntegrityError` on mismatch.

Rules shared by all backends (so that S3, a directory and memory behave the same):

* keys are ``/``-separated, relative, at most 1024 UTF-8 bytes; no empty segment, and no segment
  may start with ``.`` (this forbids ``..`` and leaves dot-names free for internal files);
* user metadata keys match ``[a-z0-9][a-z0-9_-]*`` (S3 folds header case), values are printable
  ASCII, the total stays under 2 KiB (S3's limit); ``sha256`` is reserved for the store and
  ``mtime`` for S3 tools (rclone adds it on server-side copies), so backends drop it on read.
"""

from __future__ import annotations

import builtins
import hashlib
import os
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict

from orchestrator.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)

MAX_KEY_BYTES = 1024
MAX_META_BYTES = 2048
DEFAULT_CHUNK_SIZE = 1024 * 1024
HASH_INLINE_MAX_BYTES = 1024 * 1024
"""Payloads up to this size are hashed on the event loop, larger ones in a worker thread."""
SHA256_META_KEY = "sha256"
RESERVED_META_KEYS = frozenset({SHA256_META_KEY, "mtime"})

LocalPath = str | os.PathLike[str]
"""A local file path: ``str``, ``pathlib.Path`` or ``anyio.Path``."""

_META_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
_META_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


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

    async def get_data(self, key: str) -> bytes:
        """Return the bytes, verified against the recorded sha256."""
        ...

    async def get_meta(self, key: str) -> ObjectInfo:
        """Return key, size, sha256, user metadata and last-modified time."""
        ...

    async def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        """Return verified bytes and their info."""
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

    def open_stream(self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Yield the bytes in chunks; raise IntegrityError at the end on a sha256 mismatch.

        Wrap in ``contextlib.aclosing`` when you may stop early, so the connection is released.
        """
        ...

    async def download_to(
        self, key: str, path: LocalPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ObjectInfo:
        """Stream the object into ``path`` (atomically, sha256-checked)."""
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


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise StorageError."""
    if not isinstance(key, str) or not key:
        raise StorageError("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise StorageError(f"object key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key:
        raise StorageError(f"object key must be relative and use '/': {key!r}")
    for segment in key.split("/"):
        if not segment or segment.startswith("."):
            raise StorageError(f"object key {key!r} has an empty segment or one starting with '.'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise StorageError(f"object key {key!r} contains control characters")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key prefix obeying the key rules."""
    if prefix:
        validate_key(prefix.rstrip("/") or "x")
    return prefix


def validate_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Check user metadata against the portable rules; return a plain dict copy."""
    result = dict(meta or {})
    total = 0
    for name, value in result.items():
        if not isinstance(name, str) or not _META_KEY_RE.match(name):
            raise StorageError(f"metadata key {name!r} must match [a-z0-9][a-z0-9_-]*")
        if name in RESERVED_META_KEYS:
            raise StorageError(f"metadata key {name!r} is reserved")
        if not isinstance(value, str) or not _META_VALUE_RE.match(value):
            raise StorageError(f"metadata value for {name!r} must be printable ASCII")
        total += len(name) + len(value)
    if total > MAX_META_BYTES:
        raise StorageError(f"user metadata larger than {MAX_META_BYTES} bytes")
    return result


def validate_sha256(value: str) -> str:
    """Return a lowercase hex sha256 or raise StorageError."""
    if not _SHA256_RE.match(value):
        raise StorageError(f"not a sha256 hex digest: {value!r}")
    return value


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


async def sha256_hex_async(data: bytes) -> str:
    """:func:`sha256_hex` that leaves the event loop free while a large payload is hashed.

    hashlib releases the GIL on large inputs, so other tasks (heartbeats, the outbox) keep
    running while a checkpoint of hundreds of MB is hashed in a worker thread.
    """
    if len(data) <= HASH_INLINE_MAX_BYTES:
        return sha256_hex(data)
    return await anyio.to_thread.run_sync(sha256_hex, data)


async def sha256_update(digest: hashlib._Hash, chunk: bytes) -> None:
    """``digest.update(chunk)`` by the same rule as :func:`sha256_hex_async`: a chunk above
    ``HASH_INLINE_MAX_BYTES`` (a multipart part, a caller's large ``chunk_size``) is hashed in
    a worker thread."""
    if len(chunk) <= HASH_INLINE_MAX_BYTES:
        digest.update(chunk)
    else:
        await anyio.to_thread.run_sync(digest.update, chunk)


def check_integrity(key: str, expected: str, actual: str) -> None:
    """Raise IntegrityError when the digests differ."""
    if expected != actual:
        raise IntegrityError(
            f"object {key!r} is corrupt: sha256 {actual} does not match recorded {expected}"
        )


class BaseObjectStore:
    """Shared bookkeeping; backends implement the ``_hooks`` below.

    Hooks receive validated keys and metadata. Missing objects raise ObjectNotFoundError.
    """

    url: str
    scheme: str = "base"

    def __init__(self, url: str) -> None:
        self.url = url
        self._closed = False

    # -- hooks -----------------------------------------------------------------------------

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        """Write bytes and metadata; raise ObjectExistsError if present and not overwrite."""
        raise NotImplementedError

    async def _put_stream(
        self, key: str, chunks: AsyncIterable[bytes], meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        """Write streamed bytes, computing sha256 on the way."""
        raise NotImplementedError

    async def _head(self, key: str) -> ObjectInfo:
        raise NotImplementedError

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        raise NotImplementedError

    def _iter(self, key: str, chunk_size: int, info: ObjectInfo) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def _set_meta(self, key: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        """Replace the user metadata of ``info`` with ``meta``, keeping bytes and sha256."""
        raise NotImplementedError

    async def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        raise NotImplementedError

    async def _list_keys(self, prefix: str) -> builtins.list[str]:
        return [info.key for info in await self._list(prefix)]

    async def _delete(self, key: str) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        return None

    # -- public API ------------------------------------------------------------------------

    async def create(
        self,
        key: str,
        data: bytes,
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store ``data``; raise ObjectExistsError if the key exists and not ``overwrite``."""
        self._check_open()
        if not isinstance(data, bytes | bytearray | memoryview):
            raise StorageError("data must be bytes")
        key, clean, data = validate_key(key), validate_meta(meta), bytes(data)
        return await self._put(key, data, await sha256_hex_async(data), clean, overwrite=overwrite)

    async def create_from_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
    ) -> ObjectInfo:
        """Store the concatenated chunks without holding them all in memory."""
        self._check_open()
        key, clean = validate_key(key), validate_meta(meta)
        if not overwrite and await self.exists(key):
            raise ObjectExistsError(f"object {key!r} already exists in {self.url}")
        return await self._put_stream(key, chunks, clean, overwrite=overwrite)

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
        return await self.create_from_stream(
            key, read_file_chunks(path, chunk_size), meta, overwrite=overwrite
        )

    async def get_meta(self, key: str) -> ObjectInfo:
        """Return key, size, sha256, user metadata and last-modified time."""
        self._check_open()
        return await self._head(validate_key(key))

    async def get(self, key: str) -> tuple[bytes, ObjectInfo]:
        """Return verified bytes and their info."""
        self._check_open()
        key = validate_key(key)
        data, info = await self._read(key)
        check_integrity(key, info.sha256, await sha256_hex_async(data))
        return data, info

    async def get_data(self, key: str) -> bytes:
        """Return the bytes, verified against the recorded sha256."""
        data, _ = await self.get(key)
        return data

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""
        try:
            await self.get_meta(key)
        except ObjectNotFoundError:
            return False
        except IntegrityError:
            return True  # present, though its metadata is unusable
        return True

    async def update_data(self, key: str, data: bytes) -> ObjectInfo:
        """Replace the bytes of an existing object, keeping its user metadata."""
        info = await self.get_meta(key)
        data = bytes(data)
        return await self._put(
            info.key, data, await sha256_hex_async(data), dict(info.meta), overwrite=True
        )

    async def update_meta(
        self, key: str, meta: Mapping[str, str], *, replace: bool = False
    ) -> ObjectInfo:
        """Merge ``meta`` into the user metadata (or replace it); sha256 is kept."""
        clean = validate_meta(meta)
        info = await self.get_meta(key)
        merged = clean if replace else validate_meta({**info.meta, **clean})
        return await self._set_meta(info.key, info, merged)

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Every object whose key starts with ``prefix``, sorted by key."""
        self._check_open()
        return sorted(await self._list(validate_prefix(prefix)), key=lambda i: i.key)

    async def list_keys(self, prefix: str = "") -> builtins.list[str]:
        """Keys starting with ``prefix``, sorted."""
        self._check_open()
        return sorted(await self._list_keys(validate_prefix(prefix)))

    async def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Remove the object; ObjectNotFoundError if absent unless ``missing_ok``."""
        self._check_open()
        try:
            await self._delete(validate_key(key))
        except ObjectNotFoundError:
            if not missing_ok:
                raise

    async def open_stream(
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Yield the bytes in chunks; raise IntegrityError at the end on a sha256 mismatch."""
        self._check_open()
        if chunk_size <= 0:
            raise StorageError("chunk_size must be positive")
        key = validate_key(key)
        info = await self._head(key)
        digest = hashlib.sha256()
        size = 0
        async for chunk in self._iter(key, chunk_size, info):
            await sha256_update(digest, chunk)
            size += len(chunk)
            yield chunk
        if size != info.size:
            raise IntegrityError(f"object {key!r} is {size} bytes, expected {info.size}")
        check_integrity(key, info.sha256, digest.hexdigest())

    async def download_to(
        self, key: str, path: LocalPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> ObjectInfo:
        """Stream the object into ``path`` via a temp file renamed once the sha256 matched."""
        target = anyio.Path(path)
        tmp = target.with_name(f".{target.name}.part")
        info = await self.get_meta(key)
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in self.open_stream(key, chunk_size):
                    await out.write(chunk)
            await tmp.replace(target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tmp.unlink(missing_ok=True)
            raise
        return info

    async def presign_get(self, key: str, expires_s: int = 3600) -> PresignedRequest:
        """A GET URL usable without credentials (S3 only)."""
        raise StorageError(f"presigned URLs are not supported by {self.scheme}://")

    async def presign_put(
        self,
        key: str,
        sha256: str,
        expires_s: int = 3600,
        meta: Mapping[str, str] | None = None,
    ) -> PresignedRequest:
        """A PUT URL for bytes whose sha256 is known in advance (S3 only)."""
        raise StorageError(f"presigned URLs are not supported by {self.scheme}://")

    async def close(self) -> None:
        """Release connections; idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"object store {self.url} is closed")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def leaf_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a task group's exception group: the first non-cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for leaf in leaves:
        if not isinstance(leaf, cancelled):
            return leaf
    return leaves[0] if leaves else group


async def read_file_chunks(path: LocalPath, chunk_size: int) -> AsyncGenerator[bytes, None]:
    """Yield a local file's bytes in chunks of at most ``chunk_size``."""
    try:
        async with await anyio.open_file(path, "rb") as src:
            while chunk := await src.read(chunk_size):
                yield chunk
    except FileNotFoundError as exc:
        raise StorageError(f"local file not found: {path}") from exc


async def rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Regroup a byte stream into chunks of exactly ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise StorageError("stream chunks must be bytes")
        buffer += chunk
        while len(buffer) >= size:
            with memoryview(buffer) as view:
                part = bytes(view[:size])
            del buffer[:size]
            yield part
    if buffer:
        yield bytes(buffer)
