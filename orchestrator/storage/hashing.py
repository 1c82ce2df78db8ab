"""sha256 of object bytes: computed on write, recorded next to the user metadata, checked on
every read (:class:`~orchestrator.errors.IntegrityError` on a mismatch)."""

from __future__ import annotations

import hashlib

import anyio
import anyio.to_thread

from orchestrator.errors import IntegrityError

HASH_INLINE_MAX_BYTES = 1024 * 1024
"""Payloads up to this size are hashed on the event loop, larger ones in a worker thread."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


async def sha256_hex_async(data: bytes) -> str:
    """:func:`sha256_hex` that leaves the event loop free while a large payload is hashed.

    hashlib releases the GIL on large inputs, so other tasks (heartbeats, the outbox) keep
    running while a checkpoint of hundreds of MB is hashed in a worker thread.
    """
    if len(data) <= HASH_INLINE_MAX_BYTES:
        return sha256_hex(data)
    return await anyio.to_thread.run_sync(sha256_hex, data)


async def sha256_update(digest: hashlib._Hash, chunk: bytes) -> None:
    """``digest.update(chunk)`` by the same rule as :func:`sha256_hex_async`: a chunk above
    ``HASH_INLINE_MAX_BYTES`` (a multipart part, a caller's large ``chunk_size``) is hashed in
    a worker thread."""
    if len(chunk) <= HASH_INLINE_MAX_BYTES:
        digest.update(chunk)
    else:
        await anyio.to_thread.run_sync(digest.update, chunk)


def check_integrity(key: str, expected: str, actual: str) -> None:
    """Raise IntegrityError when the digests differ."""
    if expected != actual:
        raise IntegrityError(
            f"object {key!r} is corrupt: its bytes have sha256 {actual}, expected {expected}"
        )
