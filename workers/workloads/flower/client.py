"""The ``flower`` workload's client participant: for each Flower message the server sends,
the ClientApp is called with it and the node's ``Context`` (in a thread: training may hold
the CPU), and its reply goes back the same way, until the server says it is done.

As Flower's SuperNode does, an exception in the ClientApp becomes an error reply
(``CLIENT_APP_RAISED_EXCEPTION``) and the strategy decides; the participant goes on. A stop
asks between messages; once the stop grace is over the participant ends even while a
ClientApp call still runs (its thread is abandoned; with process isolation it dies with the
participant's process).
"""

from __future__ import annotations

import anyio
import anyio.to_thread
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from orchestrator.errors import WorkloadError
from workers.sdk import SERVER_ID, WorkloadContext, WorkloadResult
from workers.workloads.flower import records, wire
from workers.workloads.flower.config import FlowerClientConfig, Scalar
from workers.workloads.flower.loading import load_app


async def train(ctx: WorkloadContext) -> WorkloadResult:
    cfg = FlowerClientConfig.model_validate(ctx.config)
    app: ClientApp = load_app(cfg.app, ClientApp)
    node_config: dict[str, Scalar] = {"partition-id": ctx.client_index or 0,
                                      "num-partitions": ctx.client_count}
    if ctx.data_path is not None:
        node_config["data-path"] = ctx.data_path
    context = Context(run_id=wire.flower_run_id(ctx.job_id), node_id=wire.node_id(ctx.participant),
                      node_config={**node_config, **cfg.node_config}, state=RecordDict(),
                      run_config=dict(cfg.run_config))
    rows: dict[int, dict[str, float]] = {}
    handled = 0
    while True:
        try:
            message = await ctx.receive(timeout_s=cfg.idle_timeout_s)
        except TimeoutError:
            msg = (f"no message from the server for {cfg.idle_timeout_s:g}s "
                   f"({handled} Flower messages handled)")
            raise WorkloadError(msg) from None
        kind = message.body.get("type")
        if message.sender != SERVER_ID:
            continue  # (the orchestrator's membership notices are for the server)
        if kind == wire.DONE:
            return WorkloadResult(summary={"messages": float(handled)})
        if kind == wire.ABORT:
            ctx.log.warning("the server aborted the Flower run", reason=message.body.get("reason"))
            return WorkloadResult(summary={"messages": float(handled), "aborted": 1.0})
        if kind != wire.MESSAGE:
            ctx.log.info("ignored a message", type=kind)
            continue
        request = await wire.fetch_message(ctx, message.body)
        sent_round = message.body.get("round")
        round_ = wire.message_round(request)
        if round_ is None:
            round_ = sent_round if isinstance(sent_round, int) and sent_round >= 0 else 0
        reply = await anyio.to_thread.run_sync(_call_client_app, app, request, context,
                                               abandon_on_cancel=True)
        notice = await wire.put_message(ctx, wire.REPLY, reply, message_id=wire.new_message_id(),
                                        refers_to=request.metadata.message_id, round_=round_)
        await ctx.send(SERVER_ID, notice)
        handled += 1
        metrics = records.reply_metrics(reply, wire.phase(request))
        if reply.has_error():
            metrics[f"{wire.phase(request)}_failures"] = rows.get(round_, {}).get(
                f"{wire.phase(request)}_failures", 0.0) + 1
        row = records.merge_round(rows, round_, metrics)
        if row is not None:
            await ctx.report_metrics(round_, row)


def _call_client_app(app: ClientApp, request: Message, context: Context) -> Message:
    """The ClientApp's reply, or an error reply carrying its exception (as Flower's own
    runtime makes it)."""
    try:
        reply = app(request, context)
    except Exception as exc:
        reason = f"{type(exc)}:<'{exc}'>"
    else:
        if isinstance(reply, Message):
            return reply
        reason = f"the ClientApp returned a {type(reply).__name__}, not a Message"
    return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                   reply_to=request)
