"""fedavg's server: announces each round, sends the global model, averages the updates that
arrive in time, evaluates on its held-out set, reports metrics and checkpoints every round."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from orchestrator.errors import WorkloadError
from workers.sdk import (
    ORCHESTRATOR,
    PeerMessage,
    WorkloadContext,
    WorkloadResult,
)
from workers.workloads.fedavg.config import FedAvgServerConfig
from workers.workloads.fedavg.data import DEFAULT_CLASSES, Dataset, local_data
from workers.workloads.fedavg.model import (
    SoftmaxModel,
    aggregate,
    evaluate,
    init_model,
    model_from_npz,
    model_to_npz,
)


async def serve(ctx: WorkloadContext) -> WorkloadResult:
    cfg = FedAvgServerConfig.model_validate(ctx.config)
    round_timeout_s = cfg.round_timeout_s
    test = await local_data(ctx, samples=cfg.test_samples, seed=cfg.seed,
                            features=cfg.features, classes=cfg.classes or DEFAULT_CLASSES)
    classes = cfg.classes or int(test.y.max()) + 1
    model = init_model(test.x.shape[1], classes)
    if initial := cfg.initial_checkpoint:
        model = model_from_npz(await ctx.load_checkpoint(str(initial)))
    if model.features != test.x.shape[1] or int(test.y.max()) >= model.classes:
        msg = (
            f"the model has {model.features} features and {model.classes} classes, the "
            f"held-out set {test.x.shape[1]} features and labels up to {int(test.y.max())}"
        )
        raise WorkloadError(msg)
    clients = [peer for peer in ctx.peers if peer != ctx.participant]
    try:
        final, loss, accuracy = await _run_rounds(ctx, model, test, clients, round_timeout_s,
                                                  min_round_s=cfg.min_round_s)
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
    *,
    min_round_s: float = 0.0,
) -> tuple[str, float, float]:
    """Every round, server side; returns the final checkpoint's key and its held-out loss and
    accuracy."""
    expected = set(clients)
    checkpoint = ""
    loss = accuracy = 0.0
    for round_ in range(1, ctx.rounds + 1):
        await ctx.checkpoint_cancel()
        began = anyio.current_time()
        await ctx.round_started(round_)
        key = await ctx.put_blob(f"global-r{round_}.npz", model_to_npz(model))
        for client in clients:
            if client not in ctx.gone_peers:
                await ctx.send(client, {"type": "train", "round": round_, "model": key})
        updates = await _collect_updates(ctx, round_, clients, expected, round_timeout_s)
        if len(updates) < ctx.min_clients:
            missing = [client for client in clients if client not in updates]
            gone = sorted(ctx.gone_peers & set(missing))
            msg = (
                f"round {round_}: only {len(updates)} of {len(clients)} clients sent an "
                f"update (min_clients={ctx.min_clients}); missing: {', '.join(missing)}"
                + (f" (gone: {', '.join(gone)})" if gone else
                   f" (none within {round_timeout_s:g}s)")
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
        if not final:
            await _pace(ctx, began + min_round_s)
    return checkpoint, loss, accuracy


async def _pace(ctx: WorkloadContext, until: float) -> None:
    """Sleep until ``until`` (``min_round_s``), noticing a stop request within 50 ms."""
    while (left := until - anyio.current_time()) > 0:
        await ctx.checkpoint_cancel()
        await anyio.sleep(min(left, 0.05))


async def _collect_updates(
    ctx: WorkloadContext,
    round_: int,
    clients: Sequence[str],
    expected: set[str],
    timeout_s: float,
) -> dict[str, tuple[SoftmaxModel, int]]:
    """Updates for ``round_`` until every ``expected`` client that is not gone answered, or
    the time is up, or too few clients are left to make ``min_clients`` (then at once)."""
    updates: dict[str, tuple[SoftmaxModel, int]] = {}
    deadline = anyio.current_time() + timeout_s
    while True:
        gone = ctx.gone_peers
        live = [c for c in clients if c not in gone or c in updates]
        if (expected - gone) <= updates.keys() or len(updates) >= len(live):
            break
        if len(live) < ctx.min_clients:
            break  # not enough clients left: no point in waiting
        remaining_s = deadline - anyio.current_time()
        if remaining_s <= 0:
            break
        try:
            message = await ctx.receive(timeout_s=remaining_s)
        except TimeoutError:
            break
        await ctx.checkpoint_cancel()
        if message.sender == ORCHESTRATOR:  # clients gone: ctx.gone_peers says which
            ctx.log.info("clients gone", gone=message.body.get("gone"), round=round_)
            continue
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
