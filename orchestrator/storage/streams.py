"""Byte streams shared by the backends: a local file in chunks, and a stream regrouped into
fixed-size parts (S3 multipart)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

import anyio

from orchestrator.errors import StorageError
from orchestrator.storage.port import LocalPath


async def read_file_chunks(path: LocalPath, chunk_size: int) -> AsyncGenerator[bytes, None]:
    """Yield a local file's bytes in chunks of at most ``chunk_size``."""
    try:
        async with await anyio.open_file(path, "rb") as src:
            while chunk := await src.read(chunk_size):
                yield chunk
    except FileNotFoundError as exc:
        raise StorageError(f"local file not found: {path}") from exc


async def rechunk(chunks: AsyncIterable[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """Regroup a byte stream into chunks of exactly ``size`` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise StorageError("stream chunks must be bytes")
        buffer += chunk
        while len(buffer) >= size:
            with memoryview(buffer) as view:
                part = bytes(view[:size])
            del buffer[:size]
            yield part
    if buffer:
        yield bytes(buffer)
