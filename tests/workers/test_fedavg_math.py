"""Unit tests of fedavg's pure helpers: data, training, aggregation, (de)serialisation."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import WorkloadError
from workers.workloads.fedavg import (
    SoftmaxModel,
    aggregate,
    evaluate,
    init_model,
    load_dataset,
    make_synthetic,
    model_from_npz,
    model_to_npz,
    train_local,
)


def _model(value: float, features: int = 3, classes: int = 2) -> SoftmaxModel:
    return SoftmaxModel(np.full((features, classes), value), np.full(classes, value))


def test_aggregate_is_the_sample_weighted_mean() -> None:
    merged = aggregate([(_model(1.0), 1), (_model(4.0), 3)])
    np.testing.assert_allclose(merged.weights, 3.25)
    np.testing.assert_allclose(merged.bias, 3.25)


def test_aggregate_of_one_update_is_that_update() -> None:
    model = SoftmaxModel(np.arange(6.0).reshape(3, 2), np.array([1.0, -1.0]))
    merged = aggregate([(model, 17)])
    np.testing.assert_array_equal(merged.weights, model.weights)
    np.testing.assert_array_equal(merged.bias, model.bias)


@settings(max_examples=50, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_aggregate_matches_numpy_weighted_average(counts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = [SoftmaxModel(rng.normal(size=(4, 3)), rng.normal(size=3)) for _ in counts]
    merged = aggregate(list(zip(models, counts, strict=True)))
    expected_w = np.average(np.stack([m.weights for m in models]), axis=0, weights=counts)
    expected_b = np.average(np.stack([m.bias for m in models]), axis=0, weights=counts)
    np.testing.assert_allclose(merged.weights, expected_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.bias, expected_b, rtol=1e-12, atol=1e-12)


def test_aggregate_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="zero updates"):
        aggregate([])
    with pytest.raises(ValueError, match="different shapes"):
        aggregate([(_model(1.0), 1), (_model(1.0, features=4), 1)])
    with pytest.raises(ValueError, match="positive"):
        aggregate([(_model(1.0), 0)])


def test_synthetic_data_is_deterministic_and_sharded() -> None:
    a = make_synthetic(7, client_index=0, client_count=3)
    b = make_synthetic(7, client_index=0, client_count=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    other = make_synthetic(7, client_index=1, client_count=3)
    assert other.x.shape[1] == a.x.shape[1]
    assert len(other.y) != len(a.y)  # shard sizes vary with the index
    assert not np.array_equal(other.x[: len(a.y)], a.x)
    # light non-IID: client 0 over-represents class 0
    assert np.bincount(a.y).argmax() == 0
    assert np.bincount(other.y).argmax() == 1
    test = make_synthetic(7, samples=1000)
    assert test.x.shape == (1000, 12)
    assert set(test.y.tolist()) == {0, 1, 2, 3}
    assert not np.array_equal(make_synthetic(8, samples=1000).x, test.x)


def test_make_synthetic_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="client_index"):
        make_synthetic(0, client_index=3, client_count=3)
    with pytest.raises(ValueError, match="classes"):
        make_synthetic(0, classes=1)


def test_local_training_reduces_loss_and_beats_chance() -> None:
    data = make_synthetic(0, client_index=0, client_count=1)
    model = init_model(data.x.shape[1], 4)
    loss_before, accuracy_before = evaluate(model, data.x, data.y)
    assert loss_before == pytest.approx(np.log(4))
    trained = train_local(model, data.x, data.y, epochs=2, rng=np.random.default_rng(0))
    loss_after, accuracy_after = evaluate(trained, data.x, data.y)
    assert loss_after < loss_before / 2
    assert accuracy_after > 0.8 > accuracy_before
    assert np.array_equal(model.weights, np.zeros_like(model.weights))  # input not mutated


def test_model_npz_roundtrip() -> None:
    model = SoftmaxModel(np.arange(6.0).reshape(3, 2), np.array([0.5, -0.5]))
    data = model_to_npz(model)
    back = model_from_npz(data)
    np.testing.assert_array_equal(back.weights, model.weights)
    np.testing.assert_array_equal(back.bias, model.bias)
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        assert sorted(archive.files) == ["W", "b"]


def _pickled_npz(**arrays: object) -> bytes:
    buffer = io.BytesIO()
    object_arrays: dict[str, Any] = {k: np.array(v, dtype=object) for k, v in arrays.items()}
    np.savez(buffer, **object_arrays)
    return buffer.getvalue()


def test_a_pickled_npz_is_refused() -> None:
    data = _pickled_npz(W=[[1.0, 2.0]], b=[1.0, 2.0])
    with pytest.raises(WorkloadError, match="pickle"):
        model_from_npz(data)


def test_bad_model_bytes_are_refused() -> None:
    with pytest.raises(WorkloadError, match=r"not a valid \.npz"):
        model_from_npz(b"definitely not a zip archive")
    buffer = io.BytesIO()
    np.savez(buffer, W=np.zeros((3, 2)))
    with pytest.raises(WorkloadError, match="lacks arrays"):
        model_from_npz(buffer.getvalue())
    buffer = io.BytesIO()
    np.savez(buffer, W=np.zeros((3, 2)), b=np.zeros(3))
    with pytest.raises(WorkloadError, match="shapes"):
        model_from_npz(buffer.getvalue())
    buffer = io.BytesIO()
    np.savez(buffer, W=np.full((3, 2), np.nan), b=np.zeros(2))
    with pytest.raises(WorkloadError, match="NaN"):
        model_from_npz(buffer.getvalue())


def test_load_dataset_from_npz_and_csv(tmp_path: Path) -> None:
    data = make_synthetic(3, client_index=0, client_count=1, samples=50, features=4, classes=3)
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data.x, y=data.y)
    loaded = load_dataset(str(npz))
    np.testing.assert_array_equal(loaded.x, data.x)
    np.testing.assert_array_equal(loaded.y, data.y)
    assert loaded.y.dtype == np.int64

    table = np.column_stack([data.x, data.y])
    csv_plain = tmp_path / "plain.csv"
    np.savetxt(csv_plain, table, delimiter=",", fmt="%.17g")
    csv_header = tmp_path / "header.csv"
    np.savetxt(csv_header, table, delimiter=",", fmt="%.17g", header="a,b,c,d,label", comments="")
    for path in (csv_plain, csv_header):
        loaded = load_dataset(f"file://{path}" if path is csv_header else str(path))
        np.testing.assert_allclose(loaded.x, data.x)
        np.testing.assert_array_equal(loaded.y, data.y)


def test_load_dataset_refuses_bad_files(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(_pickled_npz(x=[[1.0]], y=[0]))
    with pytest.raises(WorkloadError, match="pickle"):
        load_dataset(str(pickled))
    with pytest.raises(WorkloadError, match="unsupported"):
        load_dataset(str(tmp_path / "data.parquet"))
    with pytest.raises(WorkloadError, match="cannot read"):
        load_dataset(str(tmp_path / "missing.csv"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,0\n1,1\n")
    with pytest.raises(WorkloadError, match="same number"):
        load_dataset(str(ragged))
    fractional = tmp_path / "fractional.csv"
    fractional.write_text("1,2,0.5\n")
    with pytest.raises(WorkloadError, match="labels"):
        load_dataset(str(fractional))
    wrong_shape = tmp_path / "shape.npz"
    np.savez(wrong_shape, x=np.zeros(3), y=np.zeros(3))
    with pytest.raises(WorkloadError, match="shape"):
        load_dataset(str(wrong_shape))
