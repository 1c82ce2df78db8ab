"""``fedavg``: federated averaging of a softmax (multinomial logistic regression) model.

Theory of operation. The model is ``W`` (features x classes) and ``b`` (classes). Each round
``r = 1..rounds`` the server announces the round, stores the global model as ``.npz`` bytes
with ``put_blob`` and sends every client ``{"type": "train", "round": r, "model": key}``. A
client loads that model, runs ``epochs`` of mini-batch SGD on its local data, stores the result
and replies ``{"type": "update", "round": r, "model": key, "samples": n, ...}``. The server
waits up to ``round_timeout_s`` for the updates, averages those that arrived weighted by their
sample counts, evaluates the new global model on its held-out set, reports metrics and saves a
checkpoint (the last round's is the final one). With fewer than ``min_clients`` updates in time
it fails, naming the missing clients; late updates for an old round are ignored. After the last
round it sends ``{"type": "done"}`` to every client.

To avoid waiting a whole timeout every round for a client that died, the server only waits for
the clients that answered the previous round; an absent client that answers in time is still
counted and is waited for again from then on.

Data: ``data_path`` (``.npz`` with arrays ``x`` and ``y``, or ``.csv`` with the label in the
last column) or, without one, a deterministic synthetic problem from ``config.seed``: Gaussian
class clusters, one non-IID shard per client and a held-out test set for the server. Every
array crosses a boundary as ``.npz`` loaded with ``allow_pickle=False``; never pickle.

Config (server): ``seed`` (0), ``features`` (12), ``classes`` (4), ``test_samples`` (1000),
``round_timeout_s`` (300), ``initial_checkpoint`` (a checkpoint key to start from).
Config (client): ``seed``, ``features``, ``classes``, ``samples`` (400), ``epochs`` (2),
``lr`` (0.5), ``batch_size`` (32), ``round_timeout_s`` (300), ``idle_timeout_s``
(2 x ``round_timeout_s``). Server and clients must agree on ``seed``/``features``/``classes``
when they use synthetic data.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import anyio.to_thread
import numpy as np
from numpy.typing import NDArray

from orchestrator.core.status import Role
from orchestrator.errors import WorkloadError
from workers.registry import workload
from workers.sdk import (
    SERVER_ID,
    PeerMessage,
    WorkloadContext,
    WorkloadResult,
    config_float,
    config_int,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

DEFAULT_FEATURES = 12
DEFAULT_CLASSES = 4
DEFAULT_SAMPLES = 400
DEFAULT_TEST_SAMPLES = 1000
DEFAULT_ROUND_TIMEOUT_S = 300.0
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_CLASS_SEPARATION = 1.0  # std of the class means; the noise around them has std 1


class Dataset(NamedTuple):
    """Features ``x`` (n x d, float64) and integer labels ``y`` (n)."""

    x: FloatArray
    y: IntArray


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
    arrays = _load_npz(io.BytesIO(data), what="model", names=("W", "b"))
    weights, bias = arrays["W"], arrays["b"]
    if weights.ndim != 2 or bias.shape != (weights.shape[1],):
        msg = f"model arrays have shapes W{weights.shape} and b{bias.shape}; need (d, k) and (k,)"
        raise WorkloadError(msg)
    if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        msg = "model arrays contain NaN or infinity"
        raise WorkloadError(msg)
    return SoftmaxModel(weights.astype(np.float64), bias.astype(np.float64))


def load_dataset(path: str) -> Dataset:
    """Read ``.npz`` (arrays ``x``, ``y``) or ``.csv`` (label in the last column; an optional
    header row). Raises ``WorkloadError`` with the path on any problem."""
    file = Path(path.removeprefix("file://"))
    suffix = file.suffix.lower()
    try:
        if suffix == ".npz":
            arrays = _load_npz(file, what=str(file), names=("x", "y"))
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


def _load_npz(source: Path | io.BytesIO, *, what: str, names: Sequence[str]) -> dict[str, Any]:
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


# --- the workload ---------------------------------------------------------------------------


@workload("fedavg")
async def fedavg(ctx: WorkloadContext) -> WorkloadResult:
    """Federated averaging; the server coordinates, the clients train. See the module doc."""
    if ctx.role is Role.SERVER:
        return await _serve(ctx)
    return await _train(ctx)


async def _local_data(ctx: WorkloadContext, *, samples: int) -> Dataset:
    if ctx.data_path:
        return await anyio.to_thread.run_sync(load_dataset, ctx.data_path)
    try:
        return make_synthetic(
            config_int(ctx.config, "seed", 0),
            client_index=ctx.client_index,
            client_count=ctx.client_count,
            samples=samples,
            features=config_int(ctx.config, "features", DEFAULT_FEATURES),
            classes=config_int(ctx.config, "classes", DEFAULT_CLASSES),
        )
    except ValueError as exc:
        raise WorkloadError(str(exc)) from exc


async def _serve(ctx: WorkloadContext) -> WorkloadResult:
    round_timeout_s = config_float(
        ctx.config, "round_timeout_s", DEFAULT_ROUND_TIMEOUT_S, minimum=0
    )
    test = await _local_data(
        ctx, samples=config_int(ctx.config, "test_samples", DEFAULT_TEST_SAMPLES, minimum=1)
    )
    classes = config_int(ctx.config, "classes", int(test.y.max()) + 1, minimum=2)
    model = init_model(test.x.shape[1], classes)
    if initial := ctx.config.get("initial_checkpoint"):
        model = model_from_npz(await ctx.load_checkpoint(str(initial)))
    if model.features != test.x.shape[1] or int(test.y.max()) >= model.classes:
        msg = (
            f"the model has {model.features} features and {model.classes} classes, the "
            f"held-out set {test.x.shape[1]} features and labels up to {int(test.y.max())}"
        )
        raise WorkloadError(msg)
    clients = [peer for peer in ctx.peers if peer != ctx.participant]
    try:
        final, loss, accuracy = await _run_rounds(ctx, model, test, clients, round_timeout_s)
    except Exception as exc:
        await _tell_all(ctx, clients, {"type": "abort", "reason": str(exc)[:1000]})
        raise
    await _tell_all(ctx, clients, {"type": "done", "final_checkpoint": final})
    return WorkloadResult(
        final_checkpoint=final,
        summary={"loss": loss, "accuracy": accuracy, "rounds": float(ctx.rounds)},
    )


async def _run_rounds(
    ctx: WorkloadContext,
    model: SoftmaxModel,
    test: Dataset,
    clients: Sequence[str],
    round_timeout_s: float,
) -> tuple[str, float, float]:
    """Every round, server side; returns the final checkpoint's key and its held-out loss and
    accuracy."""
    expected = set(clients)
    checkpoint = ""
    loss = accuracy = 0.0
    for round_ in range(1, ctx.rounds + 1):
        await ctx.checkpoint_cancel()
        await ctx.round_started(round_)
        key = await ctx.put_blob(f"global-r{round_}.npz", model_to_npz(model))
        for client in clients:
            await ctx.send(client, {"type": "train", "round": round_, "model": key})
        updates = await _collect_updates(ctx, round_, clients, expected, round_timeout_s)
        if len(updates) < ctx.min_clients:
            missing = [client for client in clients if client not in updates]
            msg = (
                f"round {round_}: only {len(updates)} of {len(clients)} clients sent an "
                f"update within {round_timeout_s:g}s (min_clients={ctx.min_clients}); "
                f"missing: {', '.join(missing)}"
            )
            raise WorkloadError(msg)
        if updates:
            model = aggregate(list(updates.values()))
            expected = set(updates)
        loss, accuracy = evaluate(model, test.x, test.y)
        ctx.log.info("round aggregated", round=round_, clients=len(updates), loss=loss)
        await ctx.report_metrics(
            round_, {"loss": loss, "accuracy": accuracy, "clients": float(len(updates))}
        )
        final = round_ == ctx.rounds  # the last round's model is the final one: saved once
        checkpoint = await ctx.save_checkpoint(round_, model_to_npz(model), final=final)
    return checkpoint, loss, accuracy


async def _collect_updates(
    ctx: WorkloadContext,
    round_: int,
    clients: Sequence[str],
    expected: set[str],
    timeout_s: float,
) -> dict[str, tuple[SoftmaxModel, int]]:
    """Updates for ``round_`` until every ``expected`` client answered or the time is up."""
    updates: dict[str, tuple[SoftmaxModel, int]] = {}
    deadline = anyio.current_time() + timeout_s
    while not expected <= updates.keys() and len(updates) < len(clients):
        remaining_s = deadline - anyio.current_time()
        if remaining_s <= 0:
            break
        try:
            message = await ctx.receive(timeout_s=remaining_s)
        except TimeoutError:
            break
        await ctx.checkpoint_cancel()
        update = await _accept_update(ctx, message, round_, clients, updates)
        if update is not None:
            updates[message.sender] = update
    return updates


async def _accept_update(
    ctx: WorkloadContext,
    message: PeerMessage,
    round_: int,
    clients: Sequence[str],
    updates: Mapping[str, object],
) -> tuple[SoftmaxModel, int] | None:
    body, sender = message.body, message.sender
    if body.get("type") != "update" or sender not in clients:
        ctx.log.warning("ignored an unexpected message", sender=sender, type=body.get("type"))
        return None
    if body.get("round") != round_ or sender in updates:
        ctx.log.info("ignored a stale or duplicate update", sender=sender, round=body.get("round"))
        return None
    samples, key = body.get("samples"), body.get("model")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        ctx.log.warning("ignored an update without a positive sample count", sender=sender)
        return None
    if not isinstance(key, str):
        ctx.log.warning("ignored an update without a model key", sender=sender)
        return None
    try:
        return model_from_npz(await ctx.get_blob(key)), samples
    except WorkloadError as exc:
        ctx.log.warning("ignored an unreadable update", sender=sender, error=str(exc))
        return None


async def _tell_all(ctx: WorkloadContext, clients: Sequence[str], body: Mapping[str, Any]) -> None:
    for client in clients:
        try:
            await ctx.send(client, body)
        except Exception as exc:  # best effort: one unreachable client must not hide the rest
            ctx.log.warning("could not notify a client", client=client, error=str(exc))


async def _train(ctx: WorkloadContext) -> WorkloadResult:
    epochs = config_int(ctx.config, "epochs", 2, minimum=1)
    lr = config_float(ctx.config, "lr", 0.5, minimum=0)
    batch_size = config_int(ctx.config, "batch_size", 32, minimum=1)
    seed = config_int(ctx.config, "seed", 0)
    round_timeout_s = config_float(ctx.config, "round_timeout_s", DEFAULT_ROUND_TIMEOUT_S)
    idle_timeout_s = config_float(ctx.config, "idle_timeout_s", 2 * round_timeout_s, minimum=0)
    data = await _local_data(
        ctx, samples=config_int(ctx.config, "samples", DEFAULT_SAMPLES, minimum=1)
    )
    last_round = 0
    while True:
        await ctx.checkpoint_cancel()
        try:
            message = await ctx.receive(timeout_s=idle_timeout_s)
        except TimeoutError:
            msg = f"no message from the server for {idle_timeout_s:g}s after round {last_round}"
            raise WorkloadError(msg) from None
        body = message.body
        kind = body.get("type")
        if message.sender != SERVER_ID:
            ctx.log.warning("ignored a message from a client", sender=message.sender)
        elif kind == "done":
            return WorkloadResult(summary={"rounds": float(last_round), "samples": len(data.y)})
        elif kind == "abort":
            ctx.log.warning("the server aborted the job", reason=body.get("reason"))
            return WorkloadResult(summary={"rounds": float(last_round), "aborted": 1.0})
        elif kind == "train" and isinstance(body.get("round"), int) and body["round"] > last_round:
            last_round = body["round"]
            await _train_round(
                ctx, body, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed
            )
        else:
            ctx.log.info("ignored a message", type=kind, round=body.get("round"))


async def _train_round(
    ctx: WorkloadContext,
    body: Mapping[str, Any],
    data: Dataset,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> None:
    round_ = int(body["round"])
    model = model_from_npz(await ctx.get_blob(str(body.get("model"))))
    if model.features != data.x.shape[1] or int(data.y.max()) >= model.classes:
        msg = (
            f"the global model has {model.features} features and {model.classes} classes; the "
            f"local data has {data.x.shape[1]} features and labels up to {int(data.y.max())}"
        )
        raise WorkloadError(msg)
    await ctx.checkpoint_cancel()
    rng = np.random.default_rng([seed, 3, ctx.client_index or 0, round_])
    model = train_local(model, data.x, data.y, epochs=epochs, lr=lr, batch_size=batch_size, rng=rng)
    loss, accuracy = evaluate(model, data.x, data.y)
    key = await ctx.put_blob(f"update-r{round_}.npz", model_to_npz(model))
    samples = len(data.y)
    await ctx.send(
        SERVER_ID,
        {
            "type": "update",
            "round": round_,
            "model": key,
            "samples": samples,
            "loss": loss,
            "accuracy": accuracy,
        },
    )
    await ctx.report_metrics(
        round_, {"loss": loss, "accuracy": accuracy, "samples": float(samples)}
    )
