"""Choose an object-store backend by URL scheme (a factory registry, as Scale's brokers do).

Adding a backend means one :func:`register_backend` call; callers only ever pass a URL.
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from orchestrator.errors import StorageError
from orchestrator.storage.port import ObjectStore


class BackendFactory(Protocol):
    """Builds a store from its URL, an optional endpoint and backend-specific options."""

    def __call__(
        self, url: str, *, endpoint_url: str | None = None, **options: Any
    ) -> ObjectStore: ...


def _memory(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
    from orchestrator.storage.memory import MemoryObjectStore  # noqa: PLC0415

    return MemoryObjectStore.from_url(url, endpoint_url=endpoint_url, **options)


def _file(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
    from orchestrator.storage.file import FileObjectStore  # noqa: PLC0415

    return FileObjectStore.from_url(url, endpoint_url=endpoint_url, **options)


def _s3(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
    # Imported lazily so that memory:// and file:// users never load aioboto3.
    from orchestrator.storage.s3 import S3ObjectStore  # noqa: PLC0415

    return S3ObjectStore.from_url(url, endpoint_url=endpoint_url, **options)


_BACKENDS: dict[str, BackendFactory] = {"memory": _memory, "file": _file, "s3": _s3}


def register_backend(scheme: str, factory: BackendFactory) -> None:
    """Make ``scheme://...`` URLs open with ``factory`` (replaces an existing entry)."""
    if not scheme or not scheme.isascii() or not scheme.replace("+", "").isalnum():
        raise StorageError(f"invalid URL scheme {scheme!r}")
    _BACKENDS[scheme.lower()] = factory


def registered_schemes() -> list[str]:
    """Schemes that :func:`open_object_store` understands."""
    return sorted(_BACKENDS)


def open_object_store(url: str, *, endpoint_url: str | None = None, **options: Any) -> ObjectStore:
    """Open the store named by ``url`` (``s3://bucket/prefix``, ``file:///dir``, ``memory://x``).

    ``options`` go to the backend (for S3: ``region``, ``access_key_id``, ``part_size`` …);
    an option a backend does not know is a StorageError, not silently ignored.
    """
    scheme = urlsplit(url).scheme.lower()
    factory = _BACKENDS.get(scheme)
    if factory is None:
        raise StorageError(
            f"no object-store backend for {url!r}; known schemes: {', '.join(registered_schemes())}"
        )
    try:
        return factory(url, endpoint_url=endpoint_url, **options)
    except TypeError as exc:
        raise StorageError(f"bad options for {scheme}:// store: {exc}") from exc
