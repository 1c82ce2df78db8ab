"""Checkpoint storage: an object-store port with memory, file and S3 backends.

Open a store by URL with :func:`open_object_store` (``s3://bucket/prefix``, ``file:///dir``,
``memory://name``); upload checkpoints in the background with :class:`CheckpointUploader`.
The S3 backend (and aioboto3) is imported only when an ``s3://`` URL is opened.
"""

from orchestrator.storage.arrays import arrays_to_npz, npz_to_arrays
from orchestrator.storage.base import BaseObjectStore
from orchestrator.storage.checkpoints import checkpoint_key, checkpoints_prefix
from orchestrator.storage.file import FileObjectStore
from orchestrator.storage.memory import MemoryObjectStore
from orchestrator.storage.port import ObjectInfo, ObjectStore, PresignedRequest
from orchestrator.storage.registry import open_object_store, register_backend, registered_schemes
from orchestrator.storage.uploader import CheckpointUploader, UploadHandle, UploadOutcome

__all__ = [
    "BaseObjectStore",
    "CheckpointUploader",
    "FileObjectStore",
    "MemoryObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "PresignedRequest",
    "UploadHandle",
    "UploadOutcome",
    "arrays_to_npz",
    "checkpoint_key",
    "checkpoints_prefix",
    "npz_to_arrays",
    "open_object_store",
    "register_backend",
    "registered_schemes",
]
