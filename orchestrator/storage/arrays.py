"""Named numpy arrays <-> ``.npz`` bytes; loading never unpickles (``allow_pickle=False``)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from orchestrator.errors import IntegrityError, StorageError

Arrays = dict[str, npt.NDArray[np.generic]]


def arrays_to_npz(arrays: Mapping[str, npt.ArrayLike], *, compress: bool = False) -> bytes:
    """Serialize named arrays to ``.npz`` bytes. Object arrays are refused (they need pickle)."""
    prepared: Arrays = {}
    for name, value in arrays.items():
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise StorageError(f"array {name!r} has dtype object, which would need pickle")
        prepared[name] = array
    buffer = io.BytesIO()
    if compress:
        np.savez_compressed(buffer, allow_pickle=False, **prepared)
    else:
        np.savez(buffer, allow_pickle=False, **prepared)
    return buffer.getvalue()


def npz_to_arrays(data: bytes) -> Arrays:
    """Load ``.npz`` bytes into a dict of arrays, refusing pickled content."""
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise IntegrityError("not a valid .npz archive: it holds a single .npy array")
        with loaded as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as exc:  # numpy's message for pickled object arrays
        raise IntegrityError(f"refusing to load .npz content that needs pickle: {exc}") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise IntegrityError(f"not a valid .npz archive: {exc}") from exc
