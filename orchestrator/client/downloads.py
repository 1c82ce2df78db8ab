"""Checkpoint downloads verified against the manifest.

The bytes are streamed and checked against the manifest's sha256, the source of truth, not
against the object's own metadata: a store that lost its metadata (the local S3 server after a
restart) still downloads, and an object replaced behind the manifest's back is refused with
``IntegrityError`` naming both digests. A mismatch leaves no file behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.errors import IntegrityError
from orchestrator.storage.validation import validate_key

if TYPE_CHECKING:
    from orchestrator.storage import ObjectStore


async def download_verified(objects: ObjectStore, row: Mapping[str, Any], directory: Path
                            ) -> Path:
    """Download manifest ``row`` to ``directory / key``; its sha256 must match the row's.
    A key that would leave ``directory`` (``a/../../x``) is refused before any folder is
    made."""
    key, expected = str(row["key"]), str(row["sha256"])
    target = anyio.Path(directory / validate_key(key))
    await target.parent.mkdir(parents=True, exist_ok=True)
    try:
        await objects.download_to(key, target, sha256=expected)
    except IntegrityError as exc:
        msg = f"{key}: does not match the manifest (sha256 {expected}): {exc}"
        raise IntegrityError(msg) from exc
    return Path(target)
