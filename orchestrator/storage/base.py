"""The bookkeeping every backend shares, implemented once in :class:`BaseObjectStore`.

Theory of operation: :class:`BaseObjectStore` implements the whole public surface of
:class:`~orchestrator.storage.port.ObjectStore` — key and metadata validation, sha256
computation, overwrite refusal, integrity checks on every read — and calls a handful of
``_hooks`` that a backend implements (``_put``, ``_head``, ``_read`` …). Backends translate
their own failures into :mod:`orchestrator.errors`; nothing else leaks.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from types import TracebackType
from typing import Self

import anyio

from orchestrator.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
)
from orchestrator.storage.hashing import check_integrity, sha256_hex_async, sha256_update
from orchestrator.storage.port import DEFAULT_CHUNK_SIZE, LocalPath, ObjectInfo, PresignedRequest
from orchestrator.storage.streams import read_file_chunks
from orchestrator.storage.validation import (
    validate_key,
    validate_meta,
    validate_prefix,
    validate_sha256,
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

    async def _stat(self, key: str) -> ObjectInfo:
        """Like ``_head``, but a sha256 the store lost is reported as ``""`` (S3 overrides)."""
        return await self._head(key)

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        """Bytes and info; ``info.sha256`` may be ``""`` when the store lost it (S3)."""
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

    async def stat(self, key: str) -> ObjectInfo:
        """Key, size, sha256 and metadata of an object, also when the store lost its sha256
        (then ``sha256`` is ``""``): what a verifier can still check (existence and size)."""
        self._check_open()
        return await self._stat(validate_key(key))

    async def get(self, key: str, *, sha256: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return verified bytes and their info.

        With ``sha256`` the bytes are checked against it instead of the recorded digest, and
        an object whose sha256 metadata is missing (``_read`` reports it as ``""``) is readable.
        """
        self._check_open()
        key = validate_key(key)
        if sha256 is not None:
            validate_sha256(sha256)
        data, info = await self._read(key)
        expected = sha256 if sha256 is not None else info.sha256
        if not expected:
            raise IntegrityError(
                f"object {key!r} in {self.url} has no sha256 metadata (written outside this "
                "store, or the store lost it); pass the sha256 from the manifest"
            )
        check_integrity(key, expected, await sha256_hex_async(data))
        if info.sha256 != expected:
            info = info.model_copy(update={"sha256": expected})
        return data, info

    async def get_data(self, key: str, *, sha256: str | None = None) -> bytes:
        """Return the bytes, verified against the recorded sha256 (or ``sha256``)."""
        data, _ = await self.get(key, sha256=sha256)
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
        self, key: str, chunk_size: int = DEFAULT_CHUNK_SIZE, *, sha256: str | None = None
    ) -> AsyncIterator[bytes]:
        """Yield the bytes in chunks; raise IntegrityError at the end on a sha256 mismatch.

        With ``sha256`` (the manifest's) the bytes are checked against it instead of the
        recorded digest, so an object whose metadata the store lost streams too.
        """
        self._check_open()
        if chunk_size <= 0:
            raise StorageError("chunk_size must be positive")
        key = validate_key(key)
        if sha256 is not None:
            validate_sha256(sha256)
        info = await (self._stat(key) if sha256 is not None else self._head(key))
        expected = sha256 if sha256 is not None else info.sha256
        digest = hashlib.sha256()
        size = 0
        async for chunk in self._iter(key, chunk_size, info):
            await sha256_update(digest, chunk)
            size += len(chunk)
            yield chunk
        if size != info.size:
            raise IntegrityError(f"object {key!r} is {size} bytes, expected {info.size}")
        check_integrity(key, expected, digest.hexdigest())

    async def download_to(
        self, key: str, path: LocalPath, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
        sha256: str | None = None,
    ) -> ObjectInfo:
        """Stream the object into ``path`` via a temp file renamed once the sha256 matched
        (``sha256``, the manifest's, when given: see :meth:`open_stream`)."""
        target = anyio.Path(path)
        tmp = target.with_name(f".{target.name}.part")
        info = await (self.stat(key) if sha256 is not None else self.get_meta(key))
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in self.open_stream(key, chunk_size, sha256=sha256):
                    await out.write(chunk)
            await tmp.replace(target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await tmp.unlink(missing_ok=True)
            raise
        if sha256 is not None and info.sha256 != sha256:
            info = info.model_copy(update={"sha256": sha256})  # (verified: the bytes match it)
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
