"""Writes to S3: single and multipart puts, metadata updates (a copy), deletes.

Theory of operation for uploads (S3 metadata cannot change after an upload without a copy):

* ``create(bytes)``: one PutObject with the sha256 already known.
* ``upload_file(path)``: two passes over the file — hash it first, then a multipart upload to
  the final key with the sha256 attached from the start. Memory stays at
  ``part_size * upload_concurrency``; no server-side copy, so no 5 GiB copy limit.
* ``create_from_stream(chunks)``: a stream cannot be read twice. If it fits in one part it is a
  single PutObject; otherwise it is uploaded multipart to a hidden temp key
  (``<prefix>.uploads/<uuid>``) while hashing, then CopyObject'd onto the final key with
  ``MetadataDirective=REPLACE`` adding the sha256, and the temp key is deleted. The final key
  thus appears only once, complete and with its sha256 (CopyObject caps this at 5 GiB).
* A failed or cancelled multipart upload is aborted (shielded from cancellation).

``update_meta`` is a CopyObject onto itself (S3 cannot edit metadata in place; 5 GiB cap).
``create(..., overwrite=False)`` checks with HEAD first, which is not atomic against another
writer of the same key; checkpoint keys are written by a single participant.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from datetime import UTC, datetime

import anyio
import anyio.to_thread

from orchestrator.errors import IntegrityError, ObjectExistsError, ObjectNotFoundError, StorageError
from orchestrator.storage.hashing import sha256_hex_async, sha256_update
from orchestrator.storage.port import DEFAULT_CHUNK_SIZE, LocalPath, ObjectInfo
from orchestrator.storage.s3_client import S3Base
from orchestrator.storage.streams import read_file_chunks, rechunk
from orchestrator.storage.taskgroups import leaf_error
from orchestrator.storage.validation import SHA256_META_KEY, validate_key, validate_meta

MAX_PARTS = 10_000
_TMP_PREFIX = ".uploads/"


class S3Writes(S3Base):
    """The write hooks of the S3 store (see the module docstring for the upload paths)."""

    async def _refuse_existing(self, key: str) -> None:
        try:
            await self._head(key)
        except ObjectNotFoundError:
            return
        except IntegrityError:
            pass
        raise ObjectExistsError(f"object {key!r} already exists in {self.url}")

    async def _put(
        self, key: str, data: bytes, sha256: str, meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        if not overwrite:
            await self._refuse_existing(key)
        full = {**meta, SHA256_META_KEY: sha256}
        await self._call(
            "PutObject", key,
            lambda c: c.put_object(
                Bucket=self.bucket, Key=self._full(key), Body=data, Metadata=full
            ),
        )  # fmt: skip
        return ObjectInfo(
            key=key, size=len(data), sha256=sha256, meta=meta, last_modified=datetime.now(UTC)
        )

    async def _put_stream(
        self, key: str, chunks: AsyncIterable[bytes], meta: dict[str, str], *, overwrite: bool
    ) -> ObjectInfo:
        parts = rechunk(chunks, self.part_size)
        try:
            first = await anext(parts, b"")
            second = await anext(parts, None)
            if second is None:
                sha256 = await sha256_hex_async(first)
                return await self._put(key, first, sha256, meta, overwrite=overwrite)

            async def all_parts() -> AsyncGenerator[bytes, None]:
                yield first
                yield second
                async for part in parts:
                    yield part

            digest = hashlib.sha256()
            tmp_key = f"{_TMP_PREFIX}{uuid.uuid4().hex}"
            size = await self._multipart(tmp_key, all_parts(), {}, digest)
        finally:
            await parts.aclose()
        sha256 = digest.hexdigest()
        try:
            if not overwrite:
                await self._refuse_existing(key)
            await self._call(
                "CopyObject", key,
                lambda c: c.copy_object(
                    Bucket=self.bucket, Key=self._full(key),
                    CopySource={"Bucket": self.bucket, "Key": self._full(tmp_key)},
                    Metadata={**meta, SHA256_META_KEY: sha256}, MetadataDirective="REPLACE",
                ),
            )  # fmt: skip
        finally:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._call(
                    "DeleteObject",
                    tmp_key,
                    lambda c: c.delete_object(Bucket=self.bucket, Key=self._full(tmp_key)),
                )
        return ObjectInfo(
            key=key, size=size, sha256=sha256, meta=meta, last_modified=datetime.now(UTC)
        )

    async def upload_file(
        self,
        key: str,
        path: LocalPath,
        meta: Mapping[str, str] | None = None,
        *,
        overwrite: bool = False,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> ObjectInfo:
        """Hash the file in a first pass, then upload it (multipart if large) with its sha256."""
        self._check_open()
        key, clean = validate_key(key), validate_meta(meta)
        sha256, size = await anyio.to_thread.run_sync(_file_sha256, path)
        if size <= self.part_size:
            data = await anyio.Path(path).read_bytes()
            if await sha256_hex_async(data) != sha256:
                raise StorageError(f"local file {path} changed while being uploaded")
            return await self._put(key, data, sha256, clean, overwrite=overwrite)
        if not overwrite:
            await self._refuse_existing(key)
        check = hashlib.sha256()
        await self._multipart(
            key, rechunk(read_file_chunks(path, chunk_size), self.part_size),
            {**clean, SHA256_META_KEY: sha256}, check,
        )  # fmt: skip
        if check.hexdigest() != sha256:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._delete(key)
            raise StorageError(f"local file {path} changed while being uploaded")
        return ObjectInfo(
            key=key, size=size, sha256=sha256, meta=clean, last_modified=datetime.now(UTC)
        )

    async def _multipart(
        self,
        key: str,
        parts: AsyncGenerator[bytes, None],
        metadata: dict[str, str],
        digest: hashlib._Hash,
    ) -> int:
        """Upload ``parts`` (each ``part_size`` but the last) concurrently; return the size.

        At most ``upload_concurrency`` parts are held in memory; each is hashed into ``digest``
        in a worker thread, off the event loop. Aborts on any failure.
        """
        full = self._full(key)
        created = await self._call(
            "CreateMultipartUpload", key,
            lambda c: c.create_multipart_upload(Bucket=self.bucket, Key=full, Metadata=metadata),
        )  # fmt: skip
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}
        slots = anyio.Semaphore(self.upload_concurrency)
        size = 0

        async def send(number: int, body: bytes) -> None:
            try:
                response = await self._call(
                    "UploadPart", key,
                    lambda c: c.upload_part(
                        Bucket=self.bucket, Key=full, UploadId=upload_id,
                        PartNumber=number, Body=body,
                    ),
                )  # fmt: skip
                etags[number] = response["ETag"]
            finally:
                slots.release()

        try:
            try:
                async with anyio.create_task_group() as tg, contextlib.aclosing(parts):
                    number = 0
                    async for body in parts:
                        number += 1
                        if number > MAX_PARTS:
                            raise StorageError(f"{key!r} needs more than {MAX_PARTS} parts")
                        await sha256_update(digest, body)  # (parts are MBs: in a thread)
                        size += len(body)
                        await slots.acquire()
                        tg.start_soon(send, number, body)
            except BaseExceptionGroup as group:
                raise leaf_error(group) from None
            completed = [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
            await self._call(
                "CompleteMultipartUpload", key,
                lambda c: c.complete_multipart_upload(
                    Bucket=self.bucket, Key=full, UploadId=upload_id,
                    MultipartUpload={"Parts": completed},  # type: ignore[typeddict-item]
                ),
            )  # fmt: skip
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                await self._call(
                    "AbortMultipartUpload",
                    key,
                    lambda c: c.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id
                    ),
                )
            raise
        return size

    async def _set_meta(self, key: str, info: ObjectInfo, meta: dict[str, str]) -> ObjectInfo:
        full = self._full(key)
        await self._call(
            "CopyObject", key,
            lambda c: c.copy_object(
                Bucket=self.bucket, Key=full, CopySource={"Bucket": self.bucket, "Key": full},
                Metadata={**meta, SHA256_META_KEY: info.sha256}, MetadataDirective="REPLACE",
            ),
        )  # fmt: skip
        return info.model_copy(update={"meta": meta, "last_modified": datetime.now(UTC)})

    async def _delete(self, key: str) -> None:
        full = self._full(key)
        await self._call("HeadObject", key, lambda c: c.head_object(Bucket=self.bucket, Key=full))
        await self._call(
            "DeleteObject", key, lambda c: c.delete_object(Bucket=self.bucket, Key=full)
        )


def _file_sha256(path: LocalPath) -> tuple[str, int]:
    """Hex sha256 and size of a local file (blocking: run it in a worker thread)."""
    try:
        with open(path, "rb") as src:
            return hashlib.file_digest(src, "sha256").hexdigest(), src.tell()
    except FileNotFoundError as exc:
        raise StorageError(f"local file not found: {path}") from exc
