"""The ``flower`` workload's server participant: runs the ServerApp with an
:class:`~.grid.OrchestratorGrid` and a Flower ``Context``, as Flower's own runners do
(``ServerApp.__call__(grid, context)``), then tells the clients it is done."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal
from flwr.app import Context, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import ServerApp
from flwr.supercore.logger import FLOWER_LOGGER
from flwr.supercore.task_identity import TaskIdentity

from orchestrator.errors import OrchestratorError, WorkloadError
from workers.sdk import WorkloadCancelled, WorkloadContext, WorkloadResult
from workers.workloads.flower import wire
from workers.workloads.flower.config import FlowerServerConfig
from workers.workloads.flower.grid import OrchestratorGrid
from workers.workloads.flower.loading import load_app
from workers.workloads.flower.observer import RoundObserver, StrategyMetricsHandler
from workers.workloads.flower.transport import Transport


async def serve(ctx: WorkloadContext) -> WorkloadResult:
    cfg = FlowerServerConfig.model_validate(ctx.config)
    app: ServerApp = load_app(cfg.app, ServerApp)
    run_id = wire.flower_run_id(ctx.job_id)
    context = Context(run_id=run_id, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"num-server-rounds": ctx.rounds, **cfg.run_config})
    observer = RoundObserver(ctx)
    transport = Transport(ctx, observer)
    try:
        await _run(app, context, transport, run_id)
    except WorkloadCancelled:
        raise  # the orchestrator stops the clients itself
    except Exception as exc:
        await _tell_clients(transport, {"type": wire.ABORT, "reason": str(exc)[:1000]})
        if isinstance(exc, OrchestratorError):  # ours (e.g. too few clients, storage) as is
            raise
        msg = f"the Flower ServerApp raised {type(exc).__name__}: {exc}"
        raise WorkloadError(msg) from exc
    final = await observer.finish()
    await _tell_clients(transport, {"type": wire.DONE})
    return WorkloadResult(final_checkpoint=final, summary={"rounds": float(observer.round)})


async def _run(app: ServerApp, context: Context, transport: Transport, run_id: int) -> None:
    """The ServerApp in a thread, its grid calls served here, the inbox pumped meanwhile."""
    handler = StrategyMetricsHandler(transport.observer)
    FLOWER_LOGGER.addHandler(handler)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.pump)
            async with BlockingPortal() as portal:
                grid = OrchestratorGrid(portal, transport, run_id)
                try:
                    await anyio.to_thread.run_sync(_call_server_app, app, grid, context,
                                                   handler, abandon_on_cancel=True)
                finally:
                    grid.close()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _leaf(group) from None
    finally:
        FLOWER_LOGGER.removeHandler(handler)


def _call_server_app(app: ServerApp, grid: OrchestratorGrid, context: Context,
                     handler: StrategyMetricsHandler) -> None:
    """In the ServerApp's thread: the identity Flower's messages are made with, then the app."""
    handler.bind_current_thread()
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    app(grid, context)


def _leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that ended a task group (not the cancellations it caused)."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])


async def _tell_clients(transport: Transport, body: Mapping[str, Any]) -> None:
    ctx = transport.ctx
    for client in transport.clients:
        if client in ctx.gone_peers:
            continue
        try:
            await ctx.send(client, body)
        except Exception as exc:  # best effort: one unreachable client must not hide the rest
            ctx.log.warning("could not notify a client", client=client, error=str(exc))
