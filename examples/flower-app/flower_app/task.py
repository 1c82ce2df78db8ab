"""The model and the data: binary logistic regression on synthetic, per-client shifted data.

Every partition draws from the same true model (seed 0) with its own shift of the features, so
the clients' data differ (non-IID) but one global model fits them all. Partition -1 is the
server's held-out set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FEATURES = 10
SAMPLES = 300

FloatArray = NDArray[np.float64]


def load_data(partition_id: int, samples: int = SAMPLES) -> tuple[FloatArray, FloatArray]:
    """Features ``x`` (samples x FEATURES) and 0/1 labels ``y`` of one partition."""
    truth = np.random.default_rng(0)
    true_w = truth.normal(size=FEATURES)
    rng = np.random.default_rng(1000 + partition_id)
    shift = rng.normal(scale=0.5, size=FEATURES)
    x = rng.normal(size=(samples, FEATURES)) + shift
    logits = x @ true_w + rng.normal(scale=0.5, size=samples)
    return x, (logits > 0).astype(np.float64)


def initial_weights() -> tuple[FloatArray, FloatArray]:
    return np.zeros(FEATURES), np.zeros(1)


def _probabilities(w: FloatArray, b: FloatArray, x: FloatArray) -> FloatArray:
    z: FloatArray = 1.0 / (1.0 + np.exp(-(x @ w + b[0])))
    return z


def evaluate(w: FloatArray, b: FloatArray, x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Log loss and accuracy."""
    p = np.clip(_probabilities(w, b, x), 1e-9, 1 - 1e-9)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    accuracy = float(np.mean((p > 0.5) == (y > 0.5)))
    return loss, accuracy


def train(w: FloatArray, b: FloatArray, x: FloatArray, y: FloatArray, *, epochs: int,
          lr: float, seed: int) -> tuple[FloatArray, FloatArray]:
    """Mini-batch gradient descent on the log loss; returns new weights."""
    w, b = w.copy(), b.copy()
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), 32):
            batch = order[start:start + 32]
            error = _probabilities(w, b, x[batch]) - y[batch]
            w -= lr * x[batch].T @ error / len(batch)
            b -= lr * np.array([error.mean()])
    return w, b
