"""``linreg``: federated linear regression, written only against the workload SDK.

Every client holds synthetic data ``y = X w* + noise`` (its own rows, the same true weights
``w*`` from the shared seed). Each round the server sends the global weights to the clients
(a small JSON message), each client takes a few gradient steps on its own rows and sends its
weights and sample count back, and the server averages them weighted by samples. The server
reports ``mse`` and ``weight_error`` (distance to ``w*``) per round and saves the weights as
a checkpoint every round (``.npz``, the last one final); each client reports its local
``mse``.
"""

from __future__ import annotations

import io

import anyio
import numpy as np
from numpy.typing import NDArray

from linreg_workload.config import ClientConfig, ServerConfig
from orchestrator.core.status import Role
from orchestrator.errors import WorkloadError
from workers.sdk import ORCHESTRATOR, SERVER_ID, WorkloadContext, WorkloadResult

Array = NDArray[np.float64]


async def linreg(ctx: WorkloadContext) -> WorkloadResult:
    """Federated linear regression; the server averages, the clients fit their own rows."""
    if ctx.role is Role.SERVER:
        return await _serve(ctx, ServerConfig.model_validate(ctx.config))
    return await _train(ctx, ClientConfig.model_validate(ctx.config))


def true_weights(seed: int, features: int) -> Array:
    return np.random.default_rng([seed, 0]).normal(size=features)


def weights_npz(w: Array) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=w)
    return buffer.getvalue()


async def _serve(ctx: WorkloadContext, cfg: ServerConfig) -> WorkloadResult:
    clients = [p for p in ctx.peers if p != SERVER_ID]
    target = true_weights(cfg.seed, cfg.features)
    w = np.zeros(cfg.features)
    key, mse = "", 0.0
    for round_ in range(1, ctx.rounds + 1):
        await ctx.checkpoint_cancel()
        await ctx.round_started(round_)
        for client in clients:
            if client not in ctx.gone_peers:
                await ctx.send(client, {"type": "weights", "round": round_, "w": w.tolist()})
        updates = await _collect(ctx, round_, clients, cfg.round_timeout_s)
        if len(updates) < ctx.min_clients:
            for client in set(clients) - ctx.gone_peers:
                await ctx.send(client, {"type": "abort"})
            msg = (f"round {round_}: {len(updates)} of {len(clients)} clients answered "
                   f"(min_clients={ctx.min_clients})")
            raise WorkloadError(msg)
        total = sum(n for _, n, _ in updates.values())
        w = sum((u * (n / total) for u, n, _ in updates.values()), np.zeros(cfg.features))
        mse = sum(m * n for _, n, m in updates.values()) / total
        error = float(np.linalg.norm(w - target))
        await ctx.report_metrics(round_, {"mse": mse, "weight_error": error,
                                          "clients": float(len(updates))})
        key = await ctx.save_checkpoint(round_, weights_npz(w), final=round_ == ctx.rounds)
    for client in clients:
        await ctx.send(client, {"type": "done"})
    return WorkloadResult(final_checkpoint=key, summary={"mse": mse})


async def _collect(ctx: WorkloadContext, round_: int, clients: list[str], timeout_s: float
                   ) -> dict[str, tuple[Array, int, float]]:
    """The clients' (weights, samples, mse) for ``round_``, until every client that is not
    gone answered or ``timeout_s`` passed."""
    updates: dict[str, tuple[Array, int, float]] = {}
    with anyio.move_on_after(timeout_s):
        while set(clients) - ctx.gone_peers - updates.keys():
            message = await ctx.receive()
            body = message.body
            if message.sender == ORCHESTRATOR or body.get("round") != round_:
                continue  # (membership news, or a late answer to an earlier round)
            updates[message.sender] = (np.asarray(body["w"], dtype=np.float64),
                                       int(body["samples"]), float(body["mse"]))
    return updates


async def _train(ctx: WorkloadContext, cfg: ClientConfig) -> WorkloadResult:
    rng = np.random.default_rng([cfg.seed, 1, ctx.client_index or 0])
    x = rng.normal(size=(cfg.samples, cfg.features))
    y = x @ true_weights(cfg.seed, cfg.features) + rng.normal(scale=cfg.noise, size=cfg.samples)
    rounds = 0
    while True:
        await ctx.checkpoint_cancel()
        try:
            message = await ctx.receive(timeout_s=cfg.idle_timeout_s)
        except TimeoutError:
            raise WorkloadError(f"no word from the server for {cfg.idle_timeout_s:g}s") from None
        body = message.body
        if message.sender != SERVER_ID:
            continue
        if body.get("type") in {"done", "abort"}:
            return WorkloadResult(summary={"rounds": float(rounds)})
        w = np.asarray(body["w"], dtype=np.float64)
        for _ in range(cfg.local_steps):
            w = w - cfg.lr * (2 / cfg.samples) * (x.T @ (x @ w - y))
        mse = float(np.mean((x @ w - y) ** 2))
        rounds = int(body["round"])
        await ctx.report_metrics(rounds, {"mse": mse})
        await ctx.send(SERVER_ID, {"type": "update", "round": rounds, "w": w.tolist(),
                                   "samples": cfg.samples, "mse": mse})
