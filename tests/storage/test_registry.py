"""Backend selection by URL scheme."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import StorageError
from orchestrator.storage import (
    FileObjectStore,
    MemoryObjectStore,
    ObjectStore,
    open_object_store,
    register_backend,
    registered_schemes,
)
from orchestrator.storage.s3 import S3ObjectStore


def test_schemes_pick_backends(tmp_path: Path) -> None:
    assert isinstance(open_object_store("memory://reg"), MemoryObjectStore)
    file_store = open_object_store((tmp_path / "d").as_uri())
    assert isinstance(file_store, FileObjectStore)
    assert file_store.root == tmp_path / "d"
    s3 = open_object_store("s3://bucket/some/prefix", endpoint_url="http://127.0.0.1:1")
    assert isinstance(s3, S3ObjectStore)
    assert (s3.bucket, s3.prefix, s3.url) == ("bucket", "some/prefix/", "s3://bucket/some/prefix/")
    assert {"memory", "file", "s3"} <= set(registered_schemes())


def test_unknown_scheme_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="known schemes"):
        open_object_store("ftp://host/x")
    with pytest.raises(StorageError, match="absolute"):
        open_object_store("file://relative/dir")
    with pytest.raises(StorageError, match="does not exist"):
        open_object_store((tmp_path / "missing").as_uri(), create=False)
    with pytest.raises(StorageError, match="endpoint_url"):
        open_object_store("memory://x", endpoint_url="http://x")
    with pytest.raises(StorageError, match="key"):
        open_object_store("s3://bucket/../up")


def test_register_backend() -> None:
    opened: list[str] = []

    def factory(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
        opened.append(url)
        return MemoryObjectStore("custom")

    register_backend("custom", factory)
    assert isinstance(open_object_store("custom://anything"), MemoryObjectStore)
    assert opened == ["custom://anything"]
    with pytest.raises(StorageError):
        register_backend("bad scheme", factory)


def test_importing_storage_does_not_load_aioboto3_or_databases() -> None:
    code = (
        "import sys, orchestrator.storage as s;"
        "s.open_object_store('memory://x');"
        "print(sorted(m for m in ('aioboto3', 'botocore', 'redis', 'pymongo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_file_store_reports_key_directory_conflicts(tmp_path: Path) -> None:
    store = FileObjectStore(tmp_path / "objs")
    await store.create("a", b"1")
    with pytest.raises(StorageError, match="conflicts"):
        await store.create("a/b", b"2")
    assert await store.get_data("a") == b"1"
