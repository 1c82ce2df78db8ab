"""fedavg's client: waits for the server's messages, trains each round's global model on its
local data and sends the update back, until the server says ``done`` (or ``abort``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from orchestrator.errors import WorkloadError
from workers.sdk import SERVER_ID, WorkloadContext, WorkloadResult
from workers.workloads.fedavg.config import FedAvgClientConfig
from workers.workloads.fedavg.data import Dataset, local_data
from workers.workloads.fedavg.model import evaluate, model_from_npz, model_to_npz, train_local


async def train(ctx: WorkloadContext) -> WorkloadResult:
    cfg = FedAvgClientConfig.model_validate(ctx.config)
    epochs, lr, batch_size, seed = cfg.epochs, cfg.lr, cfg.batch_size, cfg.seed
    idle_timeout_s = (cfg.idle_timeout_s if cfg.idle_timeout_s is not None
                      else 2 * cfg.round_timeout_s)
    data = await local_data(ctx, samples=cfg.samples, seed=cfg.seed, features=cfg.features,
                            classes=cfg.classes)
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
