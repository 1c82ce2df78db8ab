"""Small built-in workloads for tests and benchmarks: ``noop``, ``sleep`` and ``fail``."""

from __future__ import annotations

import anyio
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core.status import Role
from orchestrator.errors import WorkloadError
from workers.sdk import WorkloadContext, WorkloadResult

DEFAULT_STEP_S = 0.05
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class SleepConfig(BaseModel):
    model_config = _STRICT

    seconds: float = Field(1.0, ge=0, description="total time to sleep, spread over the rounds")
    step_s: float = Field(DEFAULT_STEP_S, ge=0.001,
                          description="longest single sleep between cancellation checks")


class FailConfig(BaseModel):
    model_config = _STRICT

    message: str | None = Field(None, description="the error (default: '<participant> failed "
                                "on purpose')")
    at_round: int = Field(1, ge=1, strict=True, description="the round to fail in (beyond the "
                          "job's rounds: the last)")
    participant: str | list[str] | None = Field(None, description="only these participants "
                                                "fail (default: all)")
    seconds: float = Field(0.0, ge=0, description="sleep like ``sleep`` before failing")
    step_s: float = Field(DEFAULT_STEP_S, ge=0.001,
                          description="longest single sleep between cancellation checks")


async def noop(ctx: WorkloadContext) -> WorkloadResult:
    """Return at once. Saves no checkpoint; takes any config and ignores it (a stand-in)."""
    await ctx.checkpoint_cancel()
    return WorkloadResult()


async def sleep(ctx: WorkloadContext) -> WorkloadResult:
    """Sleep ``config.seconds`` (default 1) in total, spread over the job's rounds.

    Sleeps in steps of at most ``config.step_s`` (default 0.05 s), checking for cancellation
    between steps. With more than one round, the server announces each round and every
    participant reports ``{"round": r, "elapsed_s": ...}`` after it, which keeps heartbeats and
    progress moving in benchmarks.
    """
    cfg = SleepConfig.model_validate(ctx.config)
    elapsed_s = await _sleep_rounds(ctx, cfg.seconds, cfg.step_s, fail_at=None, message="")
    return WorkloadResult(summary={"elapsed_s": elapsed_s})


async def fail(ctx: WorkloadContext) -> WorkloadResult:
    """Raise ``WorkloadError(config.message)`` at round ``config.at_round`` (default 1).

    ``config.participant`` (an id or a list of ids) restricts which participants fail; the
    others behave like ``sleep`` with ``config.seconds`` (default 0, i.e. like ``noop``).
    ``at_round`` beyond the job's rounds fails in the last round: ``fail`` always fails.
    """
    cfg = FailConfig.model_validate(ctx.config)
    message = cfg.message or f"{ctx.participant} failed on purpose"
    chosen = cfg.participant
    selected = (chosen is None or ctx.participant == chosen
                or (isinstance(chosen, list) and ctx.participant in chosen))
    fail_at = min(cfg.at_round, ctx.rounds) if selected else None
    elapsed_s = await _sleep_rounds(ctx, cfg.seconds, cfg.step_s, fail_at=fail_at,
                                    message=message)
    return WorkloadResult(summary={"elapsed_s": elapsed_s})


async def _sleep_rounds(ctx: WorkloadContext, seconds: float, step_s: float, *,
                        fail_at: int | None, message: str) -> float:
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
