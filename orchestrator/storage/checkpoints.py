"""Checkpoint keys: where a job's checkpoints live in the object store.

The uploader that writes them is :class:`~orchestrator.storage.uploader.CheckpointUploader`.
"""

from __future__ import annotations

import re

from orchestrator.core import is_name
from orchestrator.errors import StorageError

_EXT_RE = re.compile(r"^[A-Za-z0-9]{1,16}$")


def checkpoint_key(job_id: str, round: int, participant: str, *, ext: str = "npz") -> str:
    """``jobs/<job_id>/checkpoints/<round>/<participant>.<ext>``, relative to the store prefix."""
    for label, value in (("job_id", job_id), ("participant", participant)):
        if not is_name(value):
            raise StorageError(f"{label} {value!r} is not a valid name for a checkpoint key")
    if isinstance(round, bool) or not isinstance(round, int) or round < 0:
        raise StorageError(f"round must be a non-negative integer, got {round!r}")
    if not _EXT_RE.match(ext):
        raise StorageError(f"invalid checkpoint extension {ext!r}")
    return f"jobs/{job_id}/checkpoints/{round}/{participant}.{ext}"


def checkpoints_prefix(job_id: str, round: int | None = None) -> str:
    """The listing prefix for a job's checkpoints (optionally one round)."""
    if not is_name(job_id):
        raise StorageError(f"job_id {job_id!r} is not a valid name")
    base = f"jobs/{job_id}/checkpoints/"
    return base if round is None else f"{base}{round}/"
