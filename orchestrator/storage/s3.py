"""``s3://bucket/prefix`` — the object store on S3 (or rclone / MinIO via ``endpoint_url``).

:class:`S3ObjectStore` is built in three layers, one module each: the client, its retries and
error translation (:mod:`~orchestrator.storage.s3_client`); single and multipart puts, metadata
copies and deletes (:mod:`~orchestrator.storage.s3_writes`); and here, reads, listings and
presigned URLs.
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio

from orchestrator.errors import ObjectNotFoundError, StorageError
from orchestrator.storage.port import ObjectInfo, PresignedRequest
from orchestrator.storage.s3_writes import S3Writes
from orchestrator.storage.taskgroups import leaf_error
from orchestrator.storage.validation import (
    SHA256_META_KEY,
    validate_key,
    validate_meta,
    validate_sha256,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ListObjectsV2OutputTypeDef

MAX_PRESIGN_S = 7 * 24 * 3600


class S3ObjectStore(S3Writes):
    """Objects under ``prefix`` in one S3 bucket."""

    @classmethod
    def from_url(
        cls, url: str, *, endpoint_url: str | None = None, **options: Any
    ) -> S3ObjectStore:
        """Build from ``s3://bucket/prefix``; options are the constructor's keywords."""
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            raise StorageError(f"s3:// URL takes no query or fragment: {url!r}")
        return cls(parts.netloc, parts.path, endpoint_url=endpoint_url, **options)

    async def _read(self, key: str) -> tuple[bytes, ObjectInfo]:
        async def fetch(client: S3Client) -> tuple[bytes, ObjectInfo]:
            response = await client.get_object(Bucket=self.bucket, Key=self._full(key))
            body = response["Body"]
            async with body:  # (entering yields the raw aiohttp response; keep the wrapper)
                data = await body.read()
            return data, self._info(key, response, sha256_required=False)

        return await self._call("GetObject", key, fetch)

    async def _stat(self, key: str) -> ObjectInfo:
        """HEAD, with a sha256 lost from the metadata (rclone restarted) reported as ``""``."""
        response = await self._call(
            "HeadObject", key, lambda c: c.head_object(Bucket=self.bucket, Key=self._full(key))
        )
        return self._info(key, response, sha256_required=False)

    async def _iter(self, key: str, chunk_size: int, info: ObjectInfo) -> AsyncIterator[bytes]:
        response = await self._call(
            "GetObject", key, lambda c: c.get_object(Bucket=self.bucket, Key=self._full(key))
        )
        body = response["Body"]
        async with body:
            now = self._info(key, response, sha256_required=False)
            if (now.sha256, now.size) != (info.sha256, info.size):
                raise StorageError(f"object {key!r} was replaced while being opened; retry")
            while True:
                try:
                    chunk = await body.read(chunk_size)
                except Exception as exc:
                    raise self._translate(exc, "GetObject", key) from exc
                if not chunk:
                    return
                yield chunk
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


def _check_expiry(expires_s: int) -> None:
    if not 1 <= expires_s <= MAX_PRESIGN_S:
        raise StorageError(f"expires_s must be between 1 and {MAX_PRESIGN_S} (7 days)")
