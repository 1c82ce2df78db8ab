"""The S3 client under every S3 call: session and configuration, retries, error translation.

One aioboto3 session and one client per store, opened lazily on first use and closed by
:meth:`~orchestrator.storage.base.BaseObjectStore.close`. Every object's sha256 is in its user
metadata (``x-amz-meta-sha256``).

Each request is retried a few times (``max_attempts``) with exponential backoff and full jitter
on transient failures (connection errors, timeouts, 5xx, SlowDown/throttling), with the same
:class:`~orchestrator.storage.retry.StorageRetryPolicy` that the workers wrap around whole
operations with a time budget to ride out outages; botocore's own retries are switched off.
botocore/aiohttp exceptions are translated at this boundary: missing key → ObjectNotFoundError,
403 → StorageError (permanent), connection problems/5xx → StorageUnavailableError.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import aioboto3
import aiohttp
import anyio
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

from orchestrator.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage.base import BaseObjectStore
from orchestrator.storage.port import ObjectInfo
from orchestrator.storage.retry import StorageRetryPolicy
from orchestrator.storage.validation import RESERVED_META_KEYS, SHA256_META_KEY, validate_key
from orchestrator.tls import NO_TLS_FILES, TLSFiles, s3_tls_options

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

_T = TypeVar("_T")

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB

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


def _certificate_rejected(exc: BaseException) -> bool:
    """True if ``exc`` (or what caused it) is a failed verification of the server's
    certificate, however botocore and aiohttp wrapped it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class S3Base(BaseObjectStore):
    """Objects under ``prefix`` in one S3 bucket: the client, its retries and translations.

    :class:`~orchestrator.storage.s3.S3ObjectStore` adds the writes and reads on top.
    """

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
        tls: TLSFiles = NO_TLS_FILES,
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
        try:
            self._policy = StorageRetryPolicy(
                budget_s=None, max_attempts=max_attempts, base_s=backoff_base_s,
                cap_s=max(backoff_max_s, backoff_base_s),
            )  # fmt: skip
        except ValueError as exc:
            raise StorageError(f"invalid S3 retry settings: {exc}") from exc
        self.head_concurrency = head_concurrency
        self._create_bucket = create_bucket
        tls_options = s3_tls_options(tls)  # an https endpoint's CA bundle (verify=), client cert
        self._verify: str | None = tls_options.get("verify")
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
            client_cert=tls_options.get("client_cert"),
        )
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._open_lock = anyio.Lock()

    # -- client, retries, error translation ------------------------------------------------

    async def _get_client(self) -> S3Client:
        self._check_open()
        if self._client is not None:
            return self._client
        async with self._open_lock:
            if self._client is None:
                stack = AsyncExitStack()
                client = await stack.enter_async_context(
                    self._session.client("s3", endpoint_url=self.endpoint_url,
                                         config=self._config, verify=self._verify)
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
        """Run ``call`` with quick retries on transient errors; translate driver exceptions."""

        async def translated() -> _T:
            try:
                return await call()
            except StorageError:
                raise
            except Exception as exc:
                raise self._translate(exc, op, key) from exc

        return await self._policy.run(translated, op=op, key=key)

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
        if _certificate_rejected(exc):  # permanent: retrying will not make it trusted
            return StorageError(f"{where}: the endpoint's TLS certificate is not trusted ({exc}); "
                                "set ORCHESTRATOR_S3_CA_FILE to the CA bundle that signed it")
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

    def _info(
        self, key: str, response: Mapping[str, Any], *, sha256_required: bool = True
    ) -> ObjectInfo:
        """The info of a HEAD/GET response; without ``sha256_required`` a missing sha256
        (e.g. rclone restarted: it keeps metadata in memory) is reported as ``""``."""
        meta = {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}
        sha256 = meta.pop(SHA256_META_KEY, None)
        for name in RESERVED_META_KEYS:
            meta.pop(name, None)
        if sha256 is None and not sha256_required:
            sha256 = ""
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

    async def _head(self, key: str) -> ObjectInfo:
        response = await self._call(
            "HeadObject", key, lambda c: c.head_object(Bucket=self.bucket, Key=self._full(key))
        )
        return self._info(key, response)
