"""``file:///abs/dir`` — objects as files under a directory, metadata in sidecar JSON files.

Layout: the bytes of ``a/b.npz`` live in ``DIR/a/b.npz`` and its metadata in
``DIR/a/.b.npz.meta.json`` (keys cannot have dot-segments, so sidecars never collide with keys).

Writes are atomic: bytes and sidecar go to temp files (fsynced) and are renamed into place.
The sidecar decides existence and records the inode of the data file it describes; a create
without overwrite claims the key by hard-linking the sidecar (fails if present), so two writers
cannot both win. The data file is renamed before the sidecar, and a reader that sees a data file
whose inode differs from the sidecar's knows a write is in flight and retries briefly; so
readers never pair new bytes with old metadata, even across processes.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, ValidationError

from orchestrator.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage.base import BaseObjectStore
from orchestrator.storage.hashing import sha256_update
from orchestrator.storage.port import ObjectInfo

_T = TypeVar("_T")
_READ_ATTEMPTS = 20


class _Sidecar(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: str
    size: int
    meta: dict[str, str]
    inode: int
    last_modified: datetime


class FileObjectStore(BaseObjectStore):
    """Objects stored as files below ``root``."""

    scheme = "file"

    def __init__(self, root: str | Path, *, create: bool = True, fsync: bool = True) -> None:
        self.root = Path(root)
        if not self.root.is_absolute():
            raise StorageError(f"file:// store needs an absolute directory, got {root}")
        super().__init__(self.root.as_uri())
        self._fsync = fsync
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        elif not self.root.is_dir():
            raise StorageError(f"file:// store directory does not exist: {self.root}")

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, create: bool = True, fsync: bool = True
    ) -> FileObjectStore:
        """Build from ``file:///abs/dir``."""
        if endpoint_url is not None:
            raise StorageError("file:// takes no endpoint_url")
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"file:// URL must be file:///absolute/dir, got {url!r}")
        return cls(unquote(parts.path), create=create, fsync=fsync)

    # -- paths and sync helpers (run in worker threads) ---------------------------------------

    def _data_path(self, key: str) -> Path:
        return self.root / key

    def _meta_path(self, key: str) -> Path:
        path = self.root / key
        return path.with_name(f".{path.name}.meta.json")

    def _tmp_path(self, key: str, kind: str) -> Path:
        path = self.root / key
        return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{kind}.tmp")

    def _load_sidecar(self, key: str) -> _Sidecar:
        try:
            raw = self._meta_path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None
        try:
            return _Sidecar.model_validate_json(raw)
        except ValidationError as exc:
            raise IntegrityError(f"metadata of {key!r} in {self.url} is unreadable") from exc

    def _info(self, key: str, car: _Sidecar) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=car.size,
            sha256=car.sha256,
            meta=car.meta,
            last_modified=car.last_modified,
        )

    def _sync(self, handle: BinaryIO) -> None:
        handle.flush()
        if self._fsync:
            os.fsync(handle.fileno())

    def _write_sidecar_tmp(self, key: str, car: _Sidecar) -> Path:
        tmp = self._tmp_path(key, "meta")
        with tmp.open("wb") as out:
            out.write(car.model_dump_json().encode())
            self._sync(out)
        return tmp

    def _sync_dir(self, path: Path) -> None:
        if self._fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _commit(
        self, key: str, data_tmp: Path, sha256: str, meta: dict[str, str], overwrite: bool
    ) -> ObjectInfo:
        """Move a written temp data file into place together with its sidecar."""
        meta_tmp: Path | None = None
        try:
            st = data_tmp.stat()
            car = _Sidecar(
                sha256=sha256,
                size=st.st_size,
                meta=meta,
                inode=st.st_ino,
                last_modified=datetime.now(UTC),
            )
            meta_tmp = self._write_sidecar_tmp(key, car)
            meta_path = self._meta_path(key)
            if overwrite:
                os.replace(data_tmp, self._data_path(key))
                os.replace(meta_tmp, meta_path)
            else:
                try:
                    os.link(meta_tmp, meta_path)  # claims the key atomically
                except FileExistsError:
                    raise ObjectExistsError(
                        f"object {key!r} already exists in {self.url}"
                    ) from None
                os.replace(data_tmp, self._data_path(key))
            self._sync_dir(meta_path.parent)
            return self._info(key, car)
        finally:
            data_tmp.unlink(missing_ok=True)
            if meta_tmp is not None:
                meta_tmp.unlink(missing_ok=True)

    def _put_sync(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], overwrite: bool
    ) -> ObjectInfo:
        self._data_path(key).parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp_path(key, "data")
        try:
            with tmp.open("wb") as out:
                out.write(data)
                self._sync(out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._commit(key, tmp, sha256, meta, overwrite)

    def _try_open(self, key: str) -> tuple[BinaryIO, _Sidecar] | None:
        """Open the data file if its inode matches the sidecar, else None (write in flight)."""
        car = self._load_sidecar(key)
        try:
            handle = self._data_path(key).open("rb")
        except FileNotFoundError:
            return None
        if os.fstat(handle.fileno()).st_ino != car.inode:
            handle.close()
            return None
        return handle, car

    @staticmethod
    def _read_all(handle: BinaryIO) -> bytes:
        with handle:
            return handle.read()

    def _set_meta_sync(self, key: str, sha256: str, meta: dict[str, str]) -> ObjectInfo:
        car = self._load_sidecar(key)
        if car.sha256 != sha256:
            raise StorageError(f"object {key!r} changed during the metadata update; retry")
        car = car.model_copy(update={"meta": meta, "last_modified": datetime.now(UTC)})
        tmp = self._write_sidecar_tmp(key, car)
        try:
            os.replace(tmp, self._meta_path(key))
        finally:
            tmp.unlink(missing_ok=True)
        return self._info(key, car)

    def _delete_sync(self, key: str) -> None:
        try:
            self._meta_path(key).unlink()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFoundError(f"no object {key!r} in {self.url}") from None
        self._data_path(key).unlink(missing_ok=True)
        parent = self._data_path(key).parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def _list_sync(self, prefix: str) -> builtins.list[ObjectInfo]:
        result: builtins.list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            base = "" if rel_dir == "." else rel_dir + "/"
            if not (base.startswith(prefix) or prefix.startswith(base)):
                dirnames[:] = []
                continue
            for name in filenames:
                if not (name.startswith(".") and name.endswith(".meta.json")):
                    continue
                key = base + name[1 : -len(".meta.json")]
                if key.startswith(prefix):
                    with contextlib.suppress(ObjectNotFoundError):
                        result.append(self._info(key, self._load_sidecar(key)))
        return result

    # -- hooks -------------------------------------------------------------------------------

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        try:
            return await anyio.to_thread.run_sync(func, *args)
        except (NotADirectoryError, IsADirectoryError, FileExistsError) as exc:
            raise StorageError(
                f"key conflicts with an existing key used as a directory in {self.url}: {exc}"
            ) from exc
        except PermissionError as exc:
            raise StorageError(f"permission denied in {self.url}: {exc}") from exc
        except OSError as exc:
            raise StorageUnavailableError(f"file store {self.url} failed: {exc}") from exc

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        return await self._run(self._put_sync, key, data, sha256, meta, overwrite)

    async def _put_stream(
        self, key: str, chunks: AsyncIterable[bytes], meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        await self._run(self._data_path(key).parent.mkdir, 0o777, True, True)
        tmp = self._tmp_path(key, "data")
        digest = hashlib.sha256()
        try:
            async with await anyio.open_file(tmp, "wb") as out:
                async for chunk in chunks:
                    await sha256_update(digest, chunk)
                    await out.write(chunk)
                await out.flush()
                if self._fsync:
                    await anyio.to_thread.run_sync(os.fsync, out.wrapped.fileno())
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.Path(tmp).unlink(missing_ok=True)
            raise
        return await self._run(self._commit, key, tmp, digest.hexdigest(), meta, overwrite)

    async def _head(self, key: str) -> ObjectInfo:
        car = await self._run(self._load_sidecar, key)
        return self._info(key, car)

    async def _open_consistent(self, key: str) -> tuple[BinaryIO, _Sidecar]:
        for attempt in range(_READ_ATTEMPTS):
            opened = await self._run(self._try_open, key)
            if opened is not None:
                return opened
            await anyio.sleep(0.005 * (attempt + 1))
        raise IntegrityError(f"data file of {key!r} in {self.url} does not match its metadata")

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        handle, car = await self._open_consistent(key)
        return await self._run(self._read_all, handle), self._info(key, car)

    async def _iter(self, key: str, chunk_size: int, info: ObjectInfo) -> AsyncIterator[bytes]:
        handle, car = await self._open_consistent(key)
        if car.sha256 != info.sha256:
            handle.close()
            raise StorageError(f"object {key!r} was replaced while being opened; retry")
        async with anyio.wrap_file(handle) as src:
            while chunk := await src.read(chunk_size):
                yield chunk

    async def _set_meta(self, key: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        return await self._run(self._set_meta_sync, key, info.sha256, meta)

    async def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        return await self._run(self._list_sync, prefix)

    async def _delete(self, key: str) -> None:
        await self._run(self._delete_sync, key)
