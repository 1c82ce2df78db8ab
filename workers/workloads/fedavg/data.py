"""fedavg's data: a participant's local file (``.npz`` or ``.csv``) or a deterministic synthetic
problem (Gaussian class clusters, one non-IID shard per client, a held-out set for the server)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from orchestrator.errors import WorkloadError
from workers.sdk import WorkloadContext
from workers.workloads.fedavg.model import FloatArray, IntArray
from workers.workloads.fedavg.npz import load_npz

DEFAULT_FEATURES = 12
DEFAULT_CLASSES = 4
DEFAULT_SAMPLES = 400
DEFAULT_TEST_SAMPLES = 1000
_CLASS_SEPARATION = 1.0  # std of the class means; the noise around them has std 1


class Dataset(NamedTuple):
    """Features ``x`` (n x d, float64) and integer labels ``y`` (n)."""

    x: FloatArray
    y: IntArray


def make_synthetic(
    seed: int,
    *,
    client_index: int | None = None,
    client_count: int = 1,
    samples: int = DEFAULT_SAMPLES,
    features: int = DEFAULT_FEATURES,
    classes: int = DEFAULT_CLASSES,
) -> Dataset:
    """Deterministic data from one ground-truth problem per ``(seed, features, classes)``.

    ``client_index=None`` gives the held-out test set (balanced classes, ``samples`` rows).
    A client index gives that client's shard: its own random stream, a size that varies with
    the index (``samples`` x 1, 1.25 or 1.5) and a light non-IID skew (one class twice as
    likely as each of the others).
    """
    if features < 1 or classes < 2 or samples < 1:
        msg = (
            f"need features >= 1, classes >= 2, samples >= 1 (got {features}, {classes}, {samples})"
        )
        raise ValueError(msg)
    means = np.random.default_rng([seed, 0, features, classes]).normal(
        0.0, _CLASS_SEPARATION, size=(classes, features)
    )
    probabilities = np.ones(classes)
    if client_index is None:
        rng = np.random.default_rng([seed, 1])
    else:
        if not 0 <= client_index < max(client_count, 1):
            msg = f"client_index {client_index} is outside 0..{client_count - 1}"
            raise ValueError(msg)
        rng = np.random.default_rng([seed, 2, client_index])
        samples = samples + samples * (client_index % 3) // 4
        probabilities[client_index % classes] += 1.0
    y = rng.choice(classes, size=samples, p=probabilities / probabilities.sum())
    x = means[y] + rng.normal(0.0, 1.0, size=(samples, features))
    return Dataset(x.astype(np.float64), y.astype(np.int64))


def load_dataset(path: str) -> Dataset:
    """Read ``.npz`` (arrays ``x``, ``y``) or ``.csv`` (label in the last column; an optional
    header row). Raises ``WorkloadError`` with the path on any problem."""
    file = Path(path.removeprefix("file://"))
    suffix = file.suffix.lower()
    try:
        if suffix == ".npz":
            arrays = load_npz(file, what=str(file), names=("x", "y"))
            x, y = arrays["x"], arrays["y"]
        elif suffix == ".csv":
            table = _read_csv(file)
            x, y = table[:, :-1], table[:, -1]
        else:
            msg = f"unsupported data file {file}: use .npz (arrays x, y) or .csv"
            raise WorkloadError(msg)
    except OSError as exc:
        msg = f"cannot read data file {file}: {exc}"
        raise WorkloadError(msg) from exc
    return _validated_dataset(np.asarray(x), np.asarray(y), source=str(file))


def _read_csv(file: Path) -> FloatArray:
    with file.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and not _is_numeric_row(rows[0]):
        rows = rows[1:]  # a header
    if not rows:
        msg = f"data file {file} has no rows"
        raise WorkloadError(msg)
    if len({len(row) for row in rows}) != 1 or len(rows[0]) < 2:
        msg = f"data file {file}: every row needs the same number (>= 2) of columns"
        raise WorkloadError(msg)
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError as exc:
        msg = f"data file {file} has a non-numeric cell: {exc}"
        raise WorkloadError(msg) from exc


def _is_numeric_row(row: Sequence[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _validated_dataset(x: NDArray[Any], y: NDArray[Any], *, source: str) -> Dataset:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        msg = (
            f"{source}: need x of shape (n, d) and y of shape (n,), n > 0; got {x.shape}, {y.shape}"
        )
        raise WorkloadError(msg)
    if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        msg = f"{source}: x and y must be numeric (got {x.dtype}, {y.dtype})"
        raise WorkloadError(msg)
    if not np.isfinite(x).all():
        msg = f"{source}: x contains NaN or infinity"
        raise WorkloadError(msg)
    if (y < 0).any() or (np.asarray(y, dtype=np.float64) % 1 != 0).any():
        msg = f"{source}: labels must be non-negative integers"
        raise WorkloadError(msg)
    return Dataset(x.astype(np.float64), y.astype(np.int64))


async def local_data(ctx: WorkloadContext, *, samples: int, seed: int, features: int,
                     classes: int) -> Dataset:
    """The participant's ``data_path`` if it has one, else its synthetic shard (or, for the
    server, the held-out set) of the problem ``seed``/``features``/``classes``."""
    if ctx.data_path:
        return await anyio.to_thread.run_sync(load_dataset, ctx.data_path)
    try:
        return make_synthetic(
            seed,
            client_index=ctx.client_index,
            client_count=ctx.client_count,
            samples=samples,
            features=features,
            classes=classes,
        )
    except ValueError as exc:
        raise WorkloadError(str(exc)) from exc
