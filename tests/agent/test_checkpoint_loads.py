"""The SDK's ``load_checkpoint`` verifies against the manifest's sha256, not the store's metadata.

A real agent and a real S3 (rclone): the workload saves a checkpoint, the object then loses its
sha256 metadata (rewritten without it, as a restarted rclone forgets it), and the workload still
loads it — verified against what its upload recorded, or against the digest it is given — while
a wrong digest is a clear error naming both.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
import pytest

from orchestrator.bus import Redis
from orchestrator.bus.keys import Keys
from orchestrator.errors import IntegrityError
from orchestrator.storage.s3 import S3ObjectStore
from tests.agent.support import FakeDaemon, RegisterWorkload, running_agent
from tests.helpers import s3_client, unique
from tests.storage.support import s3_store as open_s3_store
from workers.sdk import WorkloadContext, WorkloadResult

MODEL = b"the model's bytes" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def s3_store(s3_env: dict[str, str]) -> AsyncIterator[S3ObjectStore]:
    async with open_s3_store(s3_env, unique("loads")) as store:
        yield store


async def test_loads_verify_against_the_manifest_digest_when_metadata_is_lost(
    redis: Redis, keys: Keys, daemon: FakeDaemon, register_workload: RegisterWorkload,
    s3_store: S3ObjectStore, s3_env: dict[str, str],
) -> None:
    seen: dict[str, object] = {}
    s3 = s3_client(s3_env)

    async def reloader(ctx: WorkloadContext) -> WorkloadResult:
        key = await ctx.save_checkpoint(1, MODEL)
        with anyio.fail_after(10):
            while not await s3_store.exists(key):
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)  # (the upload's completion callback has run)
        s3.put_object(Bucket=s3_env["bucket"], Key=s3_store.prefix + key, Body=MODEL)
        try:
            await s3_store.get_data(key)
        except IntegrityError as exc:
            seen["plain"] = str(exc)
        seen["own"] = await ctx.load_checkpoint(key)
        seen["given"] = await ctx.load_checkpoint(key, sha256=sha(MODEL))
        try:
            await ctx.load_checkpoint(key, sha256="0" * 64)
        except IntegrityError as exc:
            seen["wrong"] = str(exc)
        return WorkloadResult()

    name = register_workload(reloader)
    async with running_agent(redis, keys, s3_store) as agent:
        start = await daemon.start(agent.config.name, workload=name)
        end = await daemon.wait_terminal(start)
    assert end.type == "participant.finished", end
    assert "no sha256 metadata" in str(seen["plain"])
    assert seen["own"] == MODEL and seen["given"] == MODEL
    assert f"its bytes have sha256 {sha(MODEL)}, expected {'0' * 64}" in str(seen["wrong"])
