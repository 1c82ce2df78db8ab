"""S3-only behaviour against the real rclone server: multipart, presigned URLs, credentials,
retries and error translation."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from helpers import s3_client, unique

from orchestrator.errors import (
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from orchestrator.storage import open_object_store
from orchestrator.storage.s3 import S3ObjectStore
from orchestrator.storage.s3_client import MIB

from .support import s3_store, sha


def pending_uploads(s3_env: dict[str, str], store: S3ObjectStore) -> list[Any]:
    listed = s3_client(s3_env).list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    return list(listed.get("Uploads", []))


async def test_multipart_upload_of_a_file(s3_env: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(12 * MIB + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    async with s3_store(s3_env, part_size=5 * MIB) as store:
        info = await store.upload_file("ckpt/big.bin", path, {"round": "1"})
        assert (info.size, info.sha256) == (len(data), sha(data))
        head = s3_client(s3_env).head_object(Bucket=store.bucket, Key=store.prefix + "ckpt/big.bin")
        assert {k.lower(): v for k, v in head["Metadata"].items()}["sha256"] == sha(data)
        meta = await store.get_meta("ckpt/big.bin")
        assert (meta.size, meta.sha256, meta.meta) == (len(data), sha(data), {"round": "1"})
        assert await store.get_data("ckpt/big.bin") == data
        target = tmp_path / "back.bin"
        await store.download_to("ckpt/big.bin", target, chunk_size=MIB)
        assert sha(target.read_bytes()) == sha(data)
        assert pending_uploads(s3_env, store) == []


async def test_multipart_upload_of_a_stream(s3_env: dict[str, str]) -> None:
    blocks = [os.urandom(MIB) for _ in range(12)]
    data = b"".join(blocks) + b"tail"

    async def gen() -> AsyncIterator[bytes]:
        for block in blocks:
            yield block
        yield b"tail"

    async with s3_store(s3_env, part_size=5 * MIB, upload_concurrency=2) as store:
        info = await store.create_from_stream("stream/big", gen(), {"src": "stream"})
        assert (info.size, info.sha256) == (len(data), sha(data))
        meta = await store.get_meta("stream/big")
        assert (meta.sha256, meta.meta) == (sha(data), {"src": "stream"})
        assert await store.get_data("stream/big") == data
        # the temporary multipart key is gone and hidden keys never show in listings
        raw = s3_client(s3_env).list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
        assert [o["Key"] for o in raw["Contents"]] == [store.prefix + "stream/big"]
        assert await store.list_keys() == ["stream/big"]
        assert pending_uploads(s3_env, store) == []


async def test_failed_stream_aborts_the_multipart_upload(s3_env: dict[str, str]) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(11):
            yield b"x" * MIB
        raise RuntimeError("producer died")

    async with s3_store(s3_env, part_size=5 * MIB) as store:
        with pytest.raises(RuntimeError, match="producer died"):
            await store.create_from_stream("stream/broken", broken())
        assert pending_uploads(s3_env, store) == []
        assert await store.list_keys() == []
        assert not await store.exists("stream/broken")


async def test_update_meta_of_a_multipart_object(s3_env: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(6 * MIB)
    path = tmp_path / "f"
    path.write_bytes(data)
    async with s3_store(s3_env, part_size=5 * MIB) as store:
        await store.upload_file("mp", path)
        await store.update_meta("mp", {"best": "true"})
        meta = await store.get_meta("mp")
        assert (meta.sha256, meta.meta, meta.size) == (sha(data), {"best": "true"}, len(data))
        assert await store.get_data("mp") == data


async def test_presigned_get_and_put_through_plain_http(s3_env: dict[str, str]) -> None:
    async with s3_store(s3_env) as store, httpx.AsyncClient() as http:
        await store.create("shared/model.npz", b"model bytes")
        get = await store.presign_get("shared/model.npz", expires_s=60)
        response = await http.get(get.url)
        assert response.status_code == 200
        assert response.content == b"model bytes"
        tampered = get.url.replace("model.npz", "other.npz")
        assert (await http.get(tampered)).status_code == 403

        payload = b"uploaded by a participant"
        put = await store.presign_put("incoming/site-1.npz", sha(payload), 60, {"site": "s1"})
        assert put.method == "PUT"
        assert put.headers["x-amz-meta-sha256"] == sha(payload)
        response = await http.put(put.url, content=payload, headers=put.headers)
        assert response.status_code == 200, response.text
        info = await store.get_meta("incoming/site-1.npz")
        assert (info.sha256, info.meta) == (sha(payload), {"site": "s1"})
        assert await store.get_data("incoming/site-1.npz") == payload

        # without the signed sha256 header the server refuses the upload
        refused = await http.put(put.url, content=payload)
        assert refused.status_code == 403
        # uploading other bytes than announced is caught when reading
        await http.put(put.url, content=b"something else", headers=put.headers)
        with pytest.raises(IntegrityError):
            await store.get_data("incoming/site-1.npz")


async def test_presign_validates_input(s3_env: dict[str, str]) -> None:
    async with s3_store(s3_env) as store:
        with pytest.raises(StorageError, match="sha256"):
            await store.presign_put("k", "not-a-digest")
        with pytest.raises(StorageError, match="expires_s"):
            await store.presign_get("k", expires_s=0)


async def test_wrong_credentials_are_a_permanent_error(s3_env: dict[str, str]) -> None:
    store = open_object_store(
        f"s3://{s3_env['bucket']}/{unique('creds')}",
        endpoint_url=s3_env["endpoint_url"],
        access_key_id=s3_env["access_key"],
        secret_access_key="wrong-secret",
        max_attempts=3,
    )
    async with store:
        with pytest.raises(StorageError, match="access denied") as caught:
            await store.create("k", b"x")
        assert not caught.value.transient
        assert not isinstance(caught.value, StorageUnavailableError)
        assert not isinstance(caught.value.__cause__, StorageError)  # translated from botocore
        with pytest.raises(StorageError, match="access denied"):
            await store.get_data("k")


async def test_missing_bucket_is_a_clear_error(s3_env: dict[str, str]) -> None:
    async with s3_store(s3_env) as store:
        store.bucket = "no-such-bucket-here"
        with pytest.raises(StorageError, match="does not exist"):
            await store.create("k", b"x", overwrite=True)


async def test_create_bucket_option(s3_env: dict[str, str]) -> None:
    bucket = unique("bkt")
    store = open_object_store(
        f"s3://{bucket}/p",
        endpoint_url=s3_env["endpoint_url"],
        access_key_id=s3_env["access_key"],
        secret_access_key=s3_env["secret_key"],
        create_bucket=True,
    )
    async with store:
        await store.create("k", b"v")
        assert await store.get_data("k") == b"v"


async def test_unreachable_endpoint_is_transient_after_retries() -> None:
    store = S3ObjectStore(
        "bucket",
        endpoint_url="http://127.0.0.1:9",  # discard port: connection refused
        access_key_id="a",
        secret_access_key="b",
        max_attempts=3,
        backoff_base_s=0.01,
        connect_timeout_s=1,
    )
    calls = 0
    original = store._translate

    def counting(exc: Exception, op: str, key: str | None) -> StorageError:
        nonlocal calls
        calls += 1
        return original(exc, op, key)

    store._translate = counting  # type: ignore[method-assign]
    async with store:
        with pytest.raises(StorageUnavailableError, match="cannot reach S3") as caught:
            await store.get_data("k")
    assert caught.value.transient
    assert calls == 3


def client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "PutObject")


class ScriptedCall:
    """An S3 call that raises ``failures`` in turn, then ``forever`` (or returns "ok")."""

    def __init__(self, *failures: ClientError, forever: ClientError | None = None) -> None:
        self.failures = list(failures)
        self.forever = forever
        self.attempts = 0

    async def __call__(self) -> str:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.forever is not None:
            raise self.forever
        return "ok"


async def test_retry_policy_on_transient_and_permanent_errors() -> None:
    store = S3ObjectStore("bucket", max_attempts=4, backoff_base_s=0.001)

    flaky = ScriptedCall(client_error("SlowDown", 503), client_error("InternalError", 500))
    assert await store._retry("PutObject", "k", flaky) == "ok"
    assert flaky.attempts == 3

    denied = ScriptedCall(forever=client_error("AccessDenied", 403))
    with pytest.raises(StorageError, match="access denied"):
        await store._retry("PutObject", "k", denied)
    assert denied.attempts == 1

    always_busy = ScriptedCall(forever=client_error("SlowDown", 503))
    with pytest.raises(StorageUnavailableError):
        await store._retry("PutObject", "k", always_busy)
    assert always_busy.attempts == 4


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (client_error("NoSuchKey", 404), ObjectNotFoundError),
        (client_error("404", 404), ObjectNotFoundError),
        (client_error("AccessDenied", 403), StorageError),
        (client_error("SlowDown", 503), StorageUnavailableError),
        (client_error("Throttling", 400), StorageUnavailableError),
        (client_error("InvalidArgument", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://x"), StorageUnavailableError),
        (OSError("reset"), StorageUnavailableError),
    ],
)
def test_error_translation(exc: Exception, expected: type[StorageError]) -> None:
    err = S3ObjectStore("bucket")._translate(exc, "Op", "k")
    assert type(err) is expected


def test_options_are_validated() -> None:
    with pytest.raises(StorageError, match="part_size"):
        open_object_store("s3://b/p", part_size=MIB)
    with pytest.raises(StorageError, match="page_size"):
        open_object_store("s3://b/p", page_size=5000)
    with pytest.raises(StorageError, match="bad options"):
        open_object_store("s3://b/p", no_such_option=1)
    with pytest.raises(StorageError, match="bucket"):
        open_object_store("s3:///p")


async def test_an_object_that_lost_its_metadata_reads_with_a_known_sha256(
    s3_env: dict[str, str],
) -> None:
    """rclone forgets user metadata when it restarts: readers that know the sha256 (from the
    manifest, or a blob key) still read and verify the bytes; others get IntegrityError."""
    async with s3_store(s3_env) as store:
        s3_client(s3_env).put_object(
            Bucket=s3_env["bucket"], Key=store.prefix + "bare/obj", Body=b"no metadata"
        )
        with pytest.raises(IntegrityError, match="no sha256 metadata"):
            await store.get_data("bare/obj")
        assert await store.get_data("bare/obj", sha256=sha(b"no metadata")) == b"no metadata"
        _, info = await store.get("bare/obj", sha256=sha(b"no metadata"))
        assert info.sha256 == sha(b"no metadata")
        with pytest.raises(IntegrityError, match="corrupt"):
            await store.get_data("bare/obj", sha256=sha(b"other bytes"))
        with pytest.raises(StorageError, match="not a sha256"):
            await store.get_data("bare/obj", sha256="nope")
