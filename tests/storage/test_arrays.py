"""Arrays <-> .npz bytes, never unpickling."""

from __future__ import annotations

import io
import pickle

import numpy as np
import numpy.typing as npt
import pytest

from orchestrator.errors import IntegrityError, StorageError
from orchestrator.storage import MemoryObjectStore, arrays_to_npz, npz_to_arrays


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(compress: bool) -> None:
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "layer1.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "layer1.bias": np.array([1.5, -2.0], dtype=np.float64),
        "step": np.array(7, dtype=np.int64),
        "mask": np.array([True, False]),
    }
    loaded = npz_to_arrays(arrays_to_npz(arrays, compress=compress))
    assert sorted(loaded) == sorted(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype
        assert loaded[name].shape == value.shape
        np.testing.assert_array_equal(loaded[name], value)


def test_pickled_object_array_is_refused_on_load() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, evil=np.array([{"a": 1}, None], dtype=object))  # pickles the objects
    with pytest.raises(IntegrityError, match="pickle"):
        npz_to_arrays(buffer.getvalue())


def test_raw_pickle_is_not_an_npz() -> None:
    with pytest.raises(IntegrityError):
        npz_to_arrays(pickle.dumps({"weights": [1, 2, 3]}))


def test_a_bare_npy_array_is_not_an_npz() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(3))
    with pytest.raises(IntegrityError, match="npz"):
        npz_to_arrays(buffer.getvalue())


def test_object_arrays_are_refused_on_save() -> None:
    with pytest.raises(StorageError, match="pickle"):
        arrays_to_npz({"x": np.array([object()], dtype=object)})


async def test_round_trip_through_a_store() -> None:
    store = MemoryObjectStore("arrays-test")
    arrays = {"w": np.ones((2, 2), dtype=np.float32)}
    await store.create("m.npz", arrays_to_npz(arrays), overwrite=True)
    loaded = npz_to_arrays(await store.get_data("m.npz"))
    np.testing.assert_array_equal(loaded["w"], arrays["w"])
    MemoryObjectStore.reset("arrays-test")
