"""``orchestrator worker --role server|client --name NAME``: run a worker agent.

The worker registers itself, consumes its command stream and runs the participants the daemon
assigns to it (see :mod:`workers.agent`). SIGTERM or SIGINT stops it gracefully: it stops its
participants, publishes ``participant.stopped`` for each, flushes its events and exits 0.
With ``--data-root DIR`` (or ``ORCHESTRATOR_DATA_ROOT``) participants' ``data_path`` is
confined to DIR (see :mod:`workers.data_paths`).
A second signal abandons the flush.
With ``--isolation process`` (the default) each participant runs in a child process of its own
(see :mod:`workers.isolation`), except workloads declared ``light``; ``--isolation inline``
runs them all in the worker's event loop, for debugging.

The worker offers every workload its Python environment provides: the entry points of the
``orchestrator.workloads`` group (the built-ins and installed plugins) plus each
``--workload NAME=module:callable`` (repeatable; it replaces an entry point of the same name).
A plugin that fails to import is logged with its name and error and skipped. The workloads
offered are logged at start and advertised in the worker's registration.
"""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING

import anyio
import click

from orchestrator.cli.common import BadInput, cli_settings, with_metrics_addr
from orchestrator.cli.connect import keys_for, object_store_for, redis_for
from orchestrator.cli.running import run
from orchestrator.core import is_name
from orchestrator.core.status import Role
from orchestrator.logs import configure_logging, get_logger
from orchestrator.settings import Settings

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


@click.command()
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True,
              help="Which participants this worker runs.")
@click.option("--name", required=True,
              help="Stable worker name (job specs assign participants to it).")
@click.option("--capacity", type=click.IntRange(1, 10_000), default=4, show_default=True,
              help="Participants run at the same time; more wait for a slot.")
@click.option("--data-root", type=click.Path(file_okay=False, dir_okay=True),
              default=None, help="Directory participants' data_path is relative to; paths "
              "leaving it are refused. Overrides ORCHESTRATOR_DATA_ROOT.")
@click.option("--workload", "workloads", multiple=True, metavar="NAME=MODULE:CALLABLE",
              help="Also offer this workload, imported from the worker's Python path "
              "(repeatable; replaces an installed one of the same name).")
@click.option("--isolation", type=click.Choice(["process", "inline"]), default="process",
              show_default=True, help="process: each participant in a child process of its "
              "own (workloads declared light run inline); inline: all in the worker itself "
              "(for debugging: a blocking workload then stops the worker's heartbeats).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Overrides ORCHESTRATOR_LOG_LEVEL.")
@click.option("--metrics-addr", metavar="[HOST:]PORT", default=None,
              help="Serve /metrics, /healthz and /readyz there (default: "
                   "ORCHESTRATOR_METRICS_ADDR, else off; a bare port binds 127.0.0.1).")
def worker(*, role: str, name: str, capacity: int, data_root: str | None,
           workloads: tuple[str, ...], isolation: str, log_level: str | None,
           metrics_addr: str | None) -> None:
    """Run a server or client worker until SIGTERM/SIGINT."""
    if not is_name(name):
        raise BadInput(f"invalid worker name {name!r}: use letters, digits, '_', '.', '-'")
    extra = parsed_workloads(workloads)
    settings = with_metrics_addr(cli_settings(), metrics_addr)
    root = checked_data_root(data_root or settings.data_root)
    configure_logging(log_level or settings.log_level, settings.log_format)
    load_workloads(extra, get_logger("orchestrator.worker", worker=name))
    run(settings, lambda: serve(settings, role=Role(role), name=name, capacity=capacity,
                                data_root=root, isolation=isolation))


def parsed_workloads(assignments: tuple[str, ...]) -> list[tuple[str, str]]:
    """``--workload`` values as (name, reference); a malformed one is bad input (exit 2)."""
    from workers.plugins import PluginError, parse_assignment  # noqa: PLC0415 - fast --help

    try:
        return [parse_assignment(text) for text in assignments]
    except PluginError as exc:
        raise BadInput(f"--workload {exc}") from None


def load_workloads(extra: list[tuple[str, str]], log: FilteringBoundLogger) -> None:
    """Discover the installed workloads, add ``extra`` (a failure is logged by the registry
    and skipped) and log what this worker offers."""
    from workers.registry import offered_workloads, register_reference  # noqa: PLC0415

    for workload_name, ref in extra:
        register_reference(workload_name, ref)
    offered = offered_workloads()
    log.info("worker offers workloads",
             workloads={n: d.get("version") for n, d in offered.items()})


def checked_data_root(root: str | None) -> str | None:
    """The data root as an absolute, resolved directory; a missing one is bad input."""
    if root is None:
        return None
    resolved = os.path.realpath(root)
    if not os.path.isdir(resolved):
        raise BadInput(f"data root {root}: no such directory")
    return resolved


async def serve(settings: Settings, *, role: Role, name: str, capacity: int,
                data_root: str | None = None, isolation: str = "process") -> None:
    """Run one worker agent with the connections ``settings`` name, until a signal."""
    from workers.agent import AgentConfig, WorkerAgent  # noqa: PLC0415 - keep --help fast

    log = get_logger("orchestrator.worker", worker=name)
    redis = redis_for(settings)
    config = AgentConfig(
        name=name,
        role=role,
        capacity=capacity,
        ttl_s=settings.worker_ttl_s,
        block_ms=min(settings.block_ms, 1000),
        max_deliveries=settings.max_deliveries,
        reclaim_idle_ms=settings.reclaim_idle_ms,
        stream_maxlen=settings.stream_maxlen,
        storage_retry_s=settings.storage_retry_s,
        data_root=data_root,
        isolation="inline" if isolation == "inline" else "process",
    )
    try:
        store = object_store_for(settings)
        async with store:
            agent = WorkerAgent(config, redis=redis, keys=keys_for(settings), store=store)
            async with anyio.create_task_group() as tg:

                async def on_signals() -> None:
                    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                        async for signum in signals:
                            if not agent.shutdown_requested:
                                log.info("signal received; shutting down",
                                         signal=signal.Signals(signum).name)
                                agent.shutdown()
                            else:
                                log.warning("second signal; exiting now")
                                tg.cancel_scope.cancel()

                tg.start_soon(on_signals)
                if settings.metrics_addr is not None:
                    from orchestrator.health.worker import serve_worker_endpoint  # noqa: PLC0415
                    from workers.uploads import UPLOADS  # noqa: PLC0415

                    await tg.start(serve_worker_endpoint, agent, settings.metrics_addr, UPLOADS)
                await agent.run()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
