"""``s3://bucket/prefix`` — the object store on S3 (or rclone / MinIO via ``endpoint_url``).

One aioboto3 session and one client per store, opened lazily on first use and closed by
:meth:`close`. Every object's sha256 is in its user metadata (``x-amz-meta-sha256``).

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

Calls are retried with exponential backoff and full jitter on transient failures (connection
errors, timeouts, 5xx, SlowDown/throttling); botocore's own retries are switched off so there
is one retry policy. botocore/aiohttp exceptions are translated at this boundary: missing key →
ObjectNotFoundError, 403 → StorageError (permanent), connection problems/5xx →
StorageUnavailableError.

``update_meta`` is a CopyObject onto itself (S3 cannot edit metadata in place; 5 GiB cap).
``create(..., overwrite=False)`` checks with HEAD first, which is not atomic against another
writer of the same key; checkpoint keys are written by a single participant.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
)
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import anyio
import anyio.to_thread
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from orchestrator.bus.retry import Backoff
from orchestrator.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage.port import (
    DEFAULT_CHUNK_SIZE,
    RESERVED_META_KEYS,
    SHA256_META_KEY,
    BaseObjectStore,
    LocalPath,
    ObjectInfo,
    PresignedRequest,
    leaf_error,
    read_file_chunks,
    rechunk,
    sha256_hex_async,
    sha256_update,
    validate_key,
    validate_meta,
    validate_sha256,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ListObjectsV2OutputTypeDef

_T = TypeVar("_T")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
MAX_PRESIGN_S = 7 * 24 * 3600
_TMP_PREFIX = ".uploads/"

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {
    "AccessDenied", "403", "Forbidden", "SignatureDoesNotMatch", "InvalidAccessKeyId",
    "ExpiredToken", "InvalidToken", "AllAccessDisabled", "AccountProblem",
}  # fmt: skip
_TRANSIENT = {
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "ServiceUnavailable", "InternalError", "RequestLimitExceeded", "TooManyRequests",
    "OperationAborted", "503", "500", "502", "504",
}  # fmt: skip


class S3ObjectStore(BaseObjectStore):
    """Objects under ``prefix`` in one S3 bucket."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: str = "path",
        part_size: int = 8 * MIB,
        upload_concurrency: int = 4,
        max_attempts: int = 5,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        page_size: int = 1000,
        head_concurrency: int = 16,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_pool_connections: int = 32,
        create_bucket: bool = False,
    ) -> None:
        if not bucket:
            raise StorageError("s3:// URL needs a bucket: s3://bucket/prefix")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
            prefix += "/"
        super().__init__(f"s3://{bucket}/{prefix}")
        if part_size < MIN_PART_SIZE:
            raise StorageError(f"S3 part_size must be at least {MIN_PART_SIZE} bytes (5 MiB)")
        if max_attempts < 1 or upload_concurrency < 1 or head_concurrency < 1:
            raise StorageError("max_attempts and concurrencies must be at least 1")
        if not 1 <= page_size <= 1000:
            raise StorageError("S3 page_size must be between 1 and 1000")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.part_size = part_size
        self.upload_concurrency = upload_concurrency
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.page_size = page_size
        self.head_concurrency = head_concurrency
        self._create_bucket = create_bucket
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region,
        )
        self._config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": addressing_style},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_pool_connections,
        )
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._open_lock = anyio.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, **options: Any
    ) -> S3ObjectStore:
        """Build from ``s3://bucket/prefix``; options are the constructor's keywords."""
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise StorageError(f"s3:// URL takes no query or fragment: {url!r}")
        return cls(parts.netloc, parts.path, endpoint_url=endpoint_url, **options)

    # -- client, retries, error translation ------------------------------------------------

    async def _get_client(self) -> S3Client:
        self._check_open()
        if self._client is not None:
            return self._client
        async with self._open_lock:
            if self._client is None:
                stack = AsyncExitStack()
                client = await stack.enter_async_context(
                    self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
                )
                self._stack, self._client = stack, client
                if self._create_bucket:
                    await self._ensure_bucket(client)
        return self._client

    async def _ensure_bucket(self, client: S3Client) -> None:
        try:
            await self._retry("HeadBucket", None, lambda: client.head_bucket(Bucket=self.bucket))
        except ObjectNotFoundError:
            try:
                await self._retry(
                    "CreateBucket", None, lambda: client.create_bucket(Bucket=self.bucket)
                )
            except StorageError as exc:
                if not any(c in str(exc) for c in ("BucketAlreadyOwnedByYou", "AlreadyExists")):
                    raise

    async def _close(self) -> None:
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            with contextlib.suppress(Exception):
                await stack.aclose()

    async def _retry(self, op: str, key: str | None, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``call`` with retries on transient errors; translate driver exceptions."""
        backoff = Backoff(base_s=self.backoff_base_s, cap_s=self.backoff_max_s)
        while True:
            try:
                return await call()
            except StorageError:
                raise
            except Exception as exc:
                err = self._translate(exc, op, key)
                if not err.transient or backoff.attempts + 1 >= self.max_attempts:
                    raise err from exc
            await backoff.sleep()

    async def _call(
        self, op: str, key: str | None, call: Callable[[S3Client], Awaitable[_T]]
    ) -> _T:
        client = await self._get_client()
        return await self._retry(op, key, lambda: call(client))

    def _translate(self, exc: Exception, op: str, key: str | None) -> StorageError:
        where = f"{op} s3://{self.bucket}/{self.prefix}{key or ''}"
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            message = error.get("Message", "")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket!r} does not exist")
            if code in _NOT_FOUND or status == 404:
                return ObjectNotFoundError(f"{where}: no such object")
            if code in _DENIED or status == 403:
                return StorageError(
                    f"{where}: access denied ({code}: {message}); check the credentials "
                    "and bucket permissions"
                )
            if code in _TRANSIENT or status >= 500 or status == 429:
                return StorageUnavailableError(f"{where}: server busy or failing ({code})")
            return StorageError(f"{where}: {code or status}: {message}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(f"{where}: no usable AWS credentials ({exc})")
        if isinstance(
            exc,
            BotoConnectionError
            | HTTPClientError
            | ReadTimeoutError
            | ResponseStreamingError
            | aiohttp.ClientError
            | OSError
            | TimeoutError,
        ):
            return StorageUnavailableError(f"{where}: cannot reach S3: {exc}")
        if isinstance(exc, BotoCoreError):
            return StorageError(f"{where}: {exc}")
        return StorageError(f"{where}: unexpected {type(exc).__name__}: {exc}")

    # -- helpers -----------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _info(self, key: str, response: Mapping[str, Any]) -> ObjectInfo:
        meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        sha256 = meta.pop(SHA256_META_KEY, None)
        for name in RESERVED_META_KEYS:
            meta.pop(name, None)
        if sha256 is None:
            raise IntegrityError(
                f"object {key!r} in {self.url} has no sha256 metadata (written outside this store?)"
            )
        modified = response.get("LastModified") or datetime.now(UTC)
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            sha256=sha256,
            meta=meta,
            last_modified=modified.astimezone(UTC),
        )

    async def _refuse_existing(self, key: str) -> None:
        try:
            await self._head(key)
        except ObjectNotFoundError:
            return
        except IntegrityError:
            pass
        raise ObjectExistsError(f"object {key!r} already exists in {self.url}")

    # -- hooks -------------------------------------------------------------------------------

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

    async def _head(self, key: str) -> ObjectInfo:
        response = await self._call(
            "HeadObject", key, lambda c: c.head_object(Bucket=self.bucket, Key=self._full(key))
        )
        return self._info(key, response)

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        async def fetch(client: S3Client) -> tuple[bytes, ObjectInfo]:
            response = await client.get_object(Bucket=self.bucket, Key=self._full(key))
            body = response["Body"]
            async with body:  # (entering yields the raw aiohttp response; keep the wrapper)
                data = await body.read()
            return data, self._info(key, response)

        return await self._call("GetObject", key, fetch)

    async def _iter(self, key: str, chunk_size: int, info: ObjectInfo) -> AsyncIterator[bytes]:
        response = await self._call(
            "GetObject", key, lambda c: c.get_object(Bucket=self.bucket, Key=self._full(key))
        )
        body = response["Body"]
        async with body:
            if self._info(key, response).sha256 != info.sha256:
                raise StorageError(f"object {key!r} was replaced while being opened; retry")
            while True:
                try:
                    chunk = await body.read(chunk_size)
                except Exception as exc:
                    raise self._translate(exc, "GetObject", key) from exc
                if not chunk:
                    return
                yield chunk

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

    async def _list_keys(self, prefix: str) -> builtins.list[str]:
        keys: builtins.list[str] = []
        token: str | None = None

        async def fetch_page(client: S3Client, *, token: str | None) -> ListObjectsV2OutputTypeDef:
            if token is None:
                return await client.list_objects_v2(
                    Bucket=self.bucket, Prefix=self.prefix + prefix, MaxKeys=self.page_size
                )
            return await client.list_objects_v2(
                Bucket=self.bucket, Prefix=self.prefix + prefix, MaxKeys=self.page_size,
                ContinuationToken=token,
            )  # fmt: skip

        while True:
            page = await self._call("ListObjectsV2", prefix, partial(fetch_page, token=token))
            for item in page.get("Contents", []):
                key = item["Key"].removeprefix(self.prefix)
                if not any(seg.startswith(".") for seg in key.split("/")):
                    keys.append(key)
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return keys

    async def _list(self, prefix: str) -> builtins.list[ObjectInfo]:
        keys = await self._list_keys(prefix)
        infos: dict[str, ObjectInfo] = {}
        limiter = anyio.CapacityLimiter(self.head_concurrency)

        async def head(key: str) -> None:
            async with limiter:
                with contextlib.suppress(ObjectNotFoundError):  # deleted since listed
                    infos[key] = await self._head(key)

        try:
            async with anyio.create_task_group() as tg:
                for key in keys:
                    tg.start_soon(head, key)
        except BaseExceptionGroup as group:
            raise leaf_error(group) from None
        return [infos[k] for k in keys if k in infos]

    async def _delete(self, key: str) -> None:
        full = self._full(key)
        await self._call("HeadObject", key, lambda c: c.head_object(Bucket=self.bucket, Key=full))
        await self._call(
            "DeleteObject", key, lambda c: c.delete_object(Bucket=self.bucket, Key=full)
        )

    # -- presigned URLs ----------------------------------------------------------------------

    async def presign_get(self, key: str, expires_s: int = 3600) -> PresignedRequest:
        """A GET URL usable by any HTTP client for ``expires_s`` seconds."""
        key = validate_key(key)
        _check_expiry(expires_s)
        client = await self._get_client()
        url = await client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=expires_s,
        )  # fmt: skip
        return PresignedRequest(method="GET", url=url, headers={}, expires_s=expires_s)

    async def presign_put(
        self,
        key: str,
        sha256: str,
        expires_s: int = 3600,
        meta: Mapping[str, str] | None = None,
    ) -> PresignedRequest:
        """A PUT URL; the uploader must send ``headers`` (they sign the sha256 and metadata).

        The bytes are not checked by S3 against ``sha256``; readers verify them.
        """
        key, clean = validate_key(key), validate_meta(meta)
        validate_sha256(sha256)
        _check_expiry(expires_s)
        metadata = {**clean, SHA256_META_KEY: sha256}
        client = await self._get_client()
        url = await client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": self._full(key), "Metadata": metadata},
            ExpiresIn=expires_s,
        )  # fmt: skip
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        return PresignedRequest(method="PUT", url=url, headers=headers, expires_s=expires_s)


def _file_sha256(path: LocalPath) -> tuple[str, int]:
    """Hex sha256 and size of a local file (blocking: run it in a worker thread)."""
    try:
        with open(path, "rb") as src:
            return hashlib.file_digest(src, "sha256").hexdigest(), src.tell()
    except FileNotFoundError as exc:
        raise StorageError(f"local file not found: {path}") from exc


def _check_expiry(expires_s: int) -> None:
    if not 1 <= expires_s <= MAX_PRESIGN_S:
        raise StorageError(f"expires_s must be between 1 and {MAX_PRESIGN_S} (7 days)")
