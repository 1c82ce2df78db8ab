"""An ``https://`` S3 endpoint (``rclone serve s3 --cert --key``) with a custom CA bundle
(``ORCHESTRATOR_S3_CA_FILE``, botocore's ``verify=``), through the store every command and
worker opens (``object_store_for``): put, get, head, list and presigned URLs. Without the CA
bundle the endpoint is refused at once, as a permanent error naming the setting."""

from __future__ import annotations

import hashlib
import ssl
import urllib.error
import urllib.request

import anyio
import pytest

from orchestrator.cli.connect import object_store_for
from orchestrator.devstack.servers import S3ServerProcess
from orchestrator.errors import StorageError, StorageUnavailableError
from orchestrator.settings import Settings, load_settings
from tests.helpers import unique
from tests.tls.certs import PKI
from tests.tls.conftest import TLS_BUCKET


@pytest.fixture
def s3_settings(tls_s3: S3ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings (and the AWS credentials in the environment, as in production) for ``tls_s3``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", tls_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", tls_s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert tls_s3.url.startswith("https://")
    return load_settings(s3_url=f"s3://{TLS_BUCKET}/{unique('tls')}",
                         s3_endpoint_url=tls_s3.url)


def _fetch(url: str, cafile: str | None) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with urllib.request.urlopen(url, context=context, timeout=10) as response:
        body: bytes = response.read()
        return body


async def test_put_get_head_list_and_presigned_get_over_https(s3_settings: Settings,
                                                              pki: PKI) -> None:
    settings = s3_settings.model_copy(update={"s3_ca_file": str(pki.ca)})
    data = b"model bytes " * 50_000  # 600 kB: several TLS records each way
    async with object_store_for(settings) as store:
        info = await store.create("round-1/model.npz", data, overwrite=False)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
        assert (await store.get_meta("round-1/model.npz")).size == len(data)
        assert await store.get_data("round-1/model.npz", sha256=info.sha256) == data
        assert [i.key for i in await store.list()] == ["round-1/model.npz"]
        signed = await store.presign_get("round-1/model.npz", expires_s=60)
    assert signed.url.startswith("https://127.0.0.1:")
    assert await anyio.to_thread.run_sync(_fetch, signed.url, str(pki.ca)) == data
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await anyio.to_thread.run_sync(_fetch, signed.url, str(pki.wrong_ca))


@pytest.mark.parametrize("ca", ["none", "wrong"])
async def test_an_untrusted_endpoint_is_a_permanent_error(s3_settings: Settings, pki: PKI,
                                                          ca: str) -> None:
    settings = s3_settings.model_copy(
        update={"s3_ca_file": str(pki.wrong_ca) if ca == "wrong" else None})
    async with object_store_for(settings) as store:
        with pytest.raises(StorageError, match="ORCHESTRATOR_S3_CA_FILE") as refused:
            await store.create("x", b"never stored", overwrite=True)
    assert not isinstance(refused.value, StorageUnavailableError)  # not retried for minutes
    assert "certificate verify failed" in str(refused.value)
