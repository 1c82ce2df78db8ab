"""Small built-in workloads for tests and benchmarks: ``noop``, ``sleep`` and ``fail``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from orchestrator.core.status import Role
from orchestrator.errors import WorkloadError
from workers.sdk import WorkloadContext, WorkloadResult, config_float

DEFAULT_STEP_S = 0.05


async def noop(ctx: WorkloadContext) -> WorkloadResult:
    """Return at once. Saves no checkpoint."""
    await ctx.checkpoint_cancel()
    return WorkloadResult()


async def sleep(ctx: WorkloadContext) -> WorkloadResult:
    """Sleep ``config.seconds`` (default 1) in total, spread over the job's rounds.

    Sleeps in steps of at most ``config.step_s`` (default 0.05 s), checking for cancellation
    between steps. With more than one round, the server announces each round and every
    participant reports ``{"round": r, "elapsed_s": ...}`` after it, which keeps heartbeats and
    progress moving in benchmarks.
    """
    seconds = config_float(ctx.config, "seconds", 1.0, minimum=0.0)
    elapsed_s = await _sleep_rounds(ctx, seconds, fail_at=None, message="")
    return WorkloadResult(summary={"elapsed_s": elapsed_s})


async def fail(ctx: WorkloadContext) -> WorkloadResult:
    """Raise ``WorkloadError(config.message)`` at round ``config.at_round`` (default 1).

    ``config.participant`` (an id or a list of ids) restricts which participants fail; the
    others behave like ``sleep`` with ``config.seconds`` (default 0, i.e. like ``noop``).
    ``at_round`` beyond the job's rounds fails in the last round: ``fail`` always fails.
    """
    message = str(ctx.config.get("message", f"{ctx.participant} failed on purpose"))
    seconds = config_float(ctx.config, "seconds", 0.0, minimum=0.0)
    at_round = ctx.config.get("at_round", 1)
    if isinstance(at_round, bool) or not isinstance(at_round, int) or at_round < 1:
        msg = f"config 'at_round' must be an integer >= 1, not {at_round!r}"
        raise WorkloadError(msg)
    fail_at = min(at_round, ctx.rounds) if _selected(ctx.participant, ctx.config) else None
    elapsed_s = await _sleep_rounds(ctx, seconds, fail_at=fail_at, message=message)
    return WorkloadResult(summary={"elapsed_s": elapsed_s})


def _selected(participant: str, config: Mapping[str, Any]) -> bool:
    chosen = config.get("participant")
    if chosen is None:
        return True
    if isinstance(chosen, str):
        return participant == chosen
    if isinstance(chosen, list):
        return participant in chosen
    msg = f"config 'participant' must be a participant id or a list of them, not {chosen!r}"
    raise WorkloadError(msg)


async def _sleep_rounds(
    ctx: WorkloadContext, seconds: float, *, fail_at: int | None, message: str
) -> float:
    step_s = config_float(ctx.config, "step_s", DEFAULT_STEP_S, minimum=0.001)
    rounds = max(ctx.rounds, 1)
    per_round_s = seconds / rounds
    started = anyio.current_time()
    for round_ in range(1, rounds + 1):
        await ctx.checkpoint_cancel()
        if ctx.role is Role.SERVER and rounds > 1:
            await ctx.round_started(round_)
        if fail_at == round_:
            ctx.log.info("failing on purpose", round=round_)
            raise WorkloadError(message)
        remaining_s = per_round_s
        while remaining_s > 0:
            await anyio.sleep(min(step_s, remaining_s))
            remaining_s -= step_s
            await ctx.checkpoint_cancel()
        if rounds > 1:
            elapsed_s = anyio.current_time() - started
            await ctx.report_metrics(round_, {"round": float(round_), "elapsed_s": elapsed_s})
    return anyio.current_time() - started
