"""The portable rules for object keys and user metadata, so that S3, a directory and memory
accept the same names:

* keys are ``/``-separated, relative, at most 1024 UTF-8 bytes; no empty segment, and no segment
  may start with ``.`` (this forbids ``..`` and leaves dot-names free for internal files);
* user metadata keys match ``[a-z0-9][a-z0-9_-]*`` (S3 folds header case), values are printable
  ASCII, the total stays under 2 KiB (S3's limit); ``sha256`` is reserved for the store and
  ``mtime`` for S3 tools (rclone adds it on server-side copies), so backends drop it on read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from orchestrator.errors import StorageError

MAX_KEY_BYTES = 1024
MAX_META_BYTES = 2048
SHA256_META_KEY = "sha256"
RESERVED_META_KEYS = frozenset({SHA256_META_KEY, "mtime"})

_META_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
_META_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise StorageError."""
    if not isinstance(key, str) or not key:
        raise StorageError("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise StorageError(f"object key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/") or "\\" in key:
        raise StorageError(f"object key must be relative and use '/': {key!r}")
    for segment in key.split("/"):
        if not segment or segment.startswith("."):
            raise StorageError(f"object key {key!r} has an empty segment or one starting with '.'")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise StorageError(f"object key {key!r} contains control characters")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key prefix obeying the key rules."""
    if prefix:
        validate_key(prefix.rstrip("/") or "x")
    return prefix


def validate_meta(meta: Mapping[str, str] | None) -> dict[str, str]:
    """Check user metadata against the portable rules; return a plain dict copy."""
    result = dict(meta or {})
    total = 0
    for name, value in result.items():
        if not isinstance(name, str) or not _META_KEY_RE.match(name):
            raise StorageError(f"metadata key {name!r} must match [a-z0-9][a-z0-9_-]*")
        if name in RESERVED_META_KEYS:
            raise StorageError(f"metadata key {name!r} is reserved")
        if not isinstance(value, str) or not _META_VALUE_RE.match(value):
            raise StorageError(f"metadata value for {name!r} must be printable ASCII")
        total += len(name) + len(value)
    if total > MAX_META_BYTES:
        raise StorageError(f"user metadata larger than {MAX_META_BYTES} bytes")
    return result


def validate_sha256(value: str) -> str:
    """Return a lowercase hex sha256 or raise StorageError."""
    if not _SHA256_RE.match(value):
        raise StorageError(f"not a sha256 hex digest: {value!r}")
    return value
