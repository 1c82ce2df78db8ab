"""Helpers of the storage tests, importable from other test packages (unlike a conftest)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from helpers import unique

from orchestrator.devstack import stack
from orchestrator.devstack.servers import S3ServerProcess, start_s3
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


BUCKET = "outage-bucket"
"""The bucket of an :class:`OwnS3` server."""


@dataclass
class OwnS3:
    """An rclone S3 server of this test only, which the test stops and starts again."""

    data_dir: Path
    access_key: str
    secret_key: str
    server: S3ServerProcess

    @property
    def env(self) -> dict[str, str]:
        return {
            "endpoint_url": self.server.url, "access_key": self.access_key,
            "secret_key": self.secret_key, "region": stack.REGION, "bucket": BUCKET,
        }  # fmt: skip

    async def stop(self) -> None:
        await anyio.to_thread.run_sync(self.server.stop)  # SIGTERM by PID (blocking: a thread)
        assert not self.server.alive()

    async def start_again(self) -> None:
        port = self.server.port
        self.server = await anyio.to_thread.run_sync(
            lambda: start_s3(self.data_dir, port, access_key=self.access_key,
                             secret_key=self.secret_key)
        )  # fmt: skip
        assert self.server.port == port
