"""The fedavg model: softmax (multinomial logistic) regression in numpy, and its pure helpers:
initialisation, evaluation, local SGD, sample-weighted averaging, ``.npz`` (de)serialisation."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from orchestrator.errors import WorkloadError
from workers.workloads.fedavg.npz import load_npz

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class SoftmaxModel:
    """A multinomial logistic regression model: ``logits = x @ weights + bias``."""

    weights: FloatArray
    bias: FloatArray

    @property
    def features(self) -> int:
        return int(self.weights.shape[0])

    @property
    def classes(self) -> int:
        return int(self.weights.shape[1])


# --- pure helpers ---------------------------------------------------------------------------


def init_model(features: int, classes: int) -> SoftmaxModel:
    """The all-zero model (uniform predictions), the usual FedAvg starting point."""
    return SoftmaxModel(np.zeros((features, classes)), np.zeros(classes))


def softmax_probabilities(model: SoftmaxModel, x: FloatArray) -> FloatArray:
    logits = x @ model.weights + model.bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    probabilities: FloatArray = exp / exp.sum(axis=1, keepdims=True)
    return probabilities


def evaluate(model: SoftmaxModel, x: FloatArray, y: IntArray) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``(x, y)``."""
    if len(y) == 0:
        return 0.0, 0.0
    probabilities = softmax_probabilities(model, x)
    picked = probabilities[np.arange(len(y)), y]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean())
    accuracy = float((probabilities.argmax(axis=1) == y).mean())
    return loss, accuracy


def train_local(
    model: SoftmaxModel,
    x: FloatArray,
    y: IntArray,
    *,
    epochs: int = 2,
    lr: float = 0.5,
    batch_size: int = 32,
    rng: np.random.Generator,
) -> SoftmaxModel:
    """``epochs`` of mini-batch SGD on the softmax cross-entropy; returns a new model."""
    weights = model.weights.copy()
    bias = model.bias.copy()
    n = len(y)
    one_hot = np.eye(model.classes)[y]
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            xb = x[batch]
            gradient = softmax_probabilities(SoftmaxModel(weights, bias), xb) - one_hot[batch]
            weights -= lr * (xb.T @ gradient) / len(batch)
            bias -= lr * gradient.mean(axis=0)
    return SoftmaxModel(weights, bias)


def aggregate(updates: Sequence[tuple[SoftmaxModel, int]]) -> SoftmaxModel:
    """FedAvg: the mean of the models weighted by their sample counts."""
    if not updates:
        msg = "cannot aggregate zero updates"
        raise ValueError(msg)
    shape = updates[0][0].weights.shape
    if any(model.weights.shape != shape for model, _ in updates):
        msg = f"updates have different shapes: {sorted({m.weights.shape for m, _ in updates})}"
        raise ValueError(msg)
    counts = np.array([samples for _, samples in updates], dtype=np.float64)
    if (counts <= 0).any():
        msg = f"sample counts must be positive, got {counts.tolist()}"
        raise ValueError(msg)
    share = counts / counts.sum()
    weights = np.tensordot(share, np.stack([m.weights for m, _ in updates]), axes=1)
    bias = share @ np.stack([m.bias for m, _ in updates])
    return SoftmaxModel(weights, bias)


def model_to_npz(model: SoftmaxModel) -> bytes:
    """``.npz`` bytes with arrays ``W`` and ``b`` (no pickle)."""
    buffer = io.BytesIO()
    np.savez(buffer, W=model.weights, b=model.bias)
    return buffer.getvalue()


def model_from_npz(data: bytes) -> SoftmaxModel:
    """Parse ``.npz`` bytes from :func:`model_to_npz`; refuses pickles and bad shapes."""
    arrays = load_npz(io.BytesIO(data), what="model", names=("W", "b"))
    weights, bias = arrays["W"], arrays["b"]
    if weights.ndim != 2 or bias.shape != (weights.shape[1],):
        msg = f"model arrays have shapes W{weights.shape} and b{bias.shape}; need (d, k) and (k,)"
        raise WorkloadError(msg)
    if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        msg = "model arrays contain NaN or infinity"
        raise WorkloadError(msg)
    return SoftmaxModel(weights.astype(np.float64), bias.astype(np.float64))
