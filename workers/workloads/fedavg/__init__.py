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
counted and is waited for again from then on. A client the orchestrator reports gone
(``ctx.gone_peers``: lost, failed, stopped, skipped at dispatch) is not waited for at all: the
round goes on with the others at once, or fails at once when fewer than ``min_clients`` are
left.

Outages: fedavg has no storage code of its own. On a worker, ``put_blob``/``get_blob`` retry an
unreachable object store for the worker's budget (``ORCHESTRATOR_STORAGE_RETRY_S``, 60 s), so
a round in an outage just takes longer; ``round_timeout_s`` here and the spec's ``round_s``
must exceed that budget plus a round's normal duration, or the round times out first. Past the
budget the participant fails with ``storage_unavailable`` (the server tells its clients to stop).

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

from orchestrator.core.status import Role
from workers.sdk import WorkloadContext, WorkloadResult
from workers.workloads.fedavg.client import train
from workers.workloads.fedavg.data import Dataset, load_dataset, local_data, make_synthetic
from workers.workloads.fedavg.model import (
    FloatArray,
    IntArray,
    SoftmaxModel,
    aggregate,
    evaluate,
    init_model,
    model_from_npz,
    model_to_npz,
    softmax_probabilities,
    train_local,
)
from workers.workloads.fedavg.server import serve

__all__ = [
    "Dataset",
    "FloatArray",
    "IntArray",
    "SoftmaxModel",
    "aggregate",
    "evaluate",
    "fedavg",
    "init_model",
    "load_dataset",
    "local_data",
    "make_synthetic",
    "model_from_npz",
    "model_to_npz",
    "softmax_probabilities",
    "train_local",
]


async def fedavg(ctx: WorkloadContext) -> WorkloadResult:
    """Federated averaging; the server coordinates, the clients train. See the module doc."""
    if ctx.role is Role.SERVER:
        return await serve(ctx)
    return await train(ctx)
