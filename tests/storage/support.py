"""Helpers of the storage tests, importable from other test packages (unlike a conftest)."""

from __future__ import annotations

import hashlib
from typing import Any

from helpers import unique

from orchestrator.storage import open_object_store
from orchestrator.storage.s3 import S3ObjectStore


def sha(data: bytes) -> str:
    """The hex sha256 the stores are expected to record for ``data``."""
    return hashlib.sha256(data).hexdigest()


def s3_store(s3_env: dict[str, str], prefix: str | None = None, **options: Any) -> S3ObjectStore:
    """An S3 store on the session server under a fresh unique prefix."""
    store = open_object_store(
        f"s3://{s3_env['bucket']}/{prefix or unique('storage')}",
        endpoint_url=s3_env["endpoint_url"],
        access_key_id=s3_env["access_key"],
        secret_access_key=s3_env["secret_key"],
        region=s3_env["region"],
        **options,
    )
    assert isinstance(store, S3ObjectStore)
    return store
