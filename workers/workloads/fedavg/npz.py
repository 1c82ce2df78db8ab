"""Safe ``.npz`` reading for fedavg: the zip magic is checked first and arrays are loaded with
``allow_pickle=False``, so a pickle is never unpickled, whatever the bytes claim to be."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import WorkloadError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def load_npz(source: Path | io.BytesIO, *, what: str, names: Sequence[str]) -> dict[str, Any]:
    """The arrays ``names`` of an ``.npz`` file or buffer; ``WorkloadError`` naming ``what``."""
    if _npz_magic(source, what=what) not in _ZIP_MAGIC:  # np.load would unpickle anything else
        msg = f"{what}: not a valid .npz archive (it is not a zip file)"
        raise WorkloadError(msg)
    try:
        with np.load(source, allow_pickle=False) as archive:
            files = list(archive.files)
            arrays = {name: archive[name] for name in names if name in files}
    except ValueError as exc:  # object arrays (pickle) are refused here, among others
        msg = f"{what}: refused to load .npz ({exc}); pickled arrays are never loaded"
        raise WorkloadError(msg) from exc
    except (zipfile.BadZipFile, EOFError) as exc:
        msg = f"{what}: not a valid .npz archive ({exc})"
        raise WorkloadError(msg) from exc
    except OSError as exc:
        msg = f"{what}: cannot read ({exc})"
        raise WorkloadError(msg) from exc
    missing = [name for name in names if name not in arrays]
    if missing:
        msg = f"{what}: .npz lacks arrays {missing} (has {files})"
        raise WorkloadError(msg)
    return arrays


def _npz_magic(source: Path | io.BytesIO, *, what: str) -> bytes:
    if isinstance(source, io.BytesIO):
        return source.getvalue()[:4]
    try:
        with source.open("rb") as handle:
            return handle.read(4)
    except OSError as exc:
        msg = f"{what}: cannot read ({exc})"
        raise WorkloadError(msg) from exc
