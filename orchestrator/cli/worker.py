"""``orchestrator worker --role server|client --name NAME``: run a worker agent.

The worker registers itself, consumes its command stream and runs the participants the daemon
assigns to it (see :mod:`workers.agent`). SIGTERM or SIGINT stops it gracefully: it stops its
participants, publishes ``participant.stopped`` for each, flushes its events and exits 0.
With ``--data-root DIR`` (or ``ORCHESTRATOR_DATA_ROOT``) participants' ``data_path`` is
confined to DIR (see :mod:`workers.data_paths`).
A second signal abandons the flush.
"""

from __future__ import annotations

import os
import signal

import anyio
import click

from orchestrator.cli.common import BadInput, cli_settings
from orchestrator.cli.connect import keys_for
from orchestrator.cli.running import run
from orchestrator.core import is_name
from orchestrator.core.status import Role
from orchestrator.logs import configure_logging, get_logger
from orchestrator.settings import Settings


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
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Overrides ORCHESTRATOR_LOG_LEVEL.")
def worker(role: str, name: str, capacity: int, data_root: str | None,
           log_level: str | None) -> None:
    """Run a server or client worker until SIGTERM/SIGINT."""
    if not is_name(name):
        raise BadInput(f"invalid worker name {name!r}: use letters, digits, '_', '.', '-'")
    settings = cli_settings()
    root = checked_data_root(data_root or settings.data_root)
    configure_logging(log_level or settings.log_level, settings.log_format)
    run(settings, lambda: serve(settings, role=Role(role), name=name, capacity=capacity,
                                data_root=root))


def checked_data_root(root: str | None) -> str | None:
    """The data root as an absolute, resolved directory; a missing one is bad input."""
    if root is None:
        return None
    resolved = os.path.realpath(root)
    if not os.path.isdir(resolved):
        raise BadInput(f"data root {root}: no such directory")
    return resolved


async def serve(settings: Settings, *, role: Role, name: str, capacity: int,
                data_root: str | None = None) -> None:
    """Run one worker agent with the connections ``settings`` name, until a signal."""
    from orchestrator.bus import connect_redis  # noqa: PLC0415 - keep --help fast
    from orchestrator.storage import open_object_store  # noqa: PLC0415
    from workers.agent import AgentConfig, WorkerAgent  # noqa: PLC0415

    log = get_logger("orchestrator.worker", worker=name)
    redis = connect_redis(settings.redis_url, password=settings.redis_password_plain)
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
    )
    try:
        store = open_object_store(settings.s3_url, endpoint_url=settings.s3_endpoint_url)
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
                await agent.run()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
