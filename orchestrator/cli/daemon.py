"""``orchestrator daemon``: run one daemon replica until SIGTERM/SIGINT.

Settings come from ``ORCHESTRATOR_*`` (see ``orchestrator.settings``); invalid settings exit 2.
If Redis or MongoDB are unreachable at startup the daemon logs each failed attempt and keeps
retrying with backoff for ``--startup-timeout`` seconds (default 60; 0 = forever), then exits
1 with a clear message. After startup, outages are ridden out: batches wait with backoff and
are acknowledged only once written. SIGTERM/SIGINT drain (exit 0); a second signal stops at
once (unacknowledged entries are read again by the next daemon).

The daemon key (``ORCHESTRATOR_DAEMON_KEY`` or ``ORCHESTRATOR_DAEMON_KEY_FILE``, the same on
every replica) is required: without it the command exits 2 before connecting to anything.

The daemon opens the workers' object store (``ORCHESTRATOR_S3_URL``, ``_S3_ENDPOINT_URL`` and
the usual AWS credentials) to verify every announced checkpoint before it enters the manifest
(``orchestrator.daemon.verify``); with a ``memory://`` store verification is off (logged).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import click

from orchestrator.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    BadInput,
    Failure,
    cli_settings,
    with_metrics_addr,
)
from orchestrator.cli.connect import mongo_for, object_store_for, redact, redis_for
from orchestrator.errors import ConfigError, StorageError
from orchestrator.logs import configure_logging, get_logger
from orchestrator.settings import MEMORY_STORE, Settings

if TYPE_CHECKING:
    from orchestrator.daemon import Daemon
    from orchestrator.storage import ObjectStore

NO_KEY = ("no daemon key: set ORCHESTRATOR_DAEMON_KEY (or ORCHESTRATOR_DAEMON_KEY_FILE) to "
          "the same secret of at least 16 bytes on every daemon replica, e.g. the output of "
          "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` "
          "(`orchestrator dev up` writes one into its env file)")


def daemon_key(settings: Settings) -> bytes:
    """The daemon key, or bad input (exit 2) naming what to set."""
    try:
        key = settings.daemon_key_bytes()
    except ConfigError as exc:
        raise BadInput(str(exc)) from exc
    if key is None:
        raise BadInput(NO_KEY)
    return key


async def _main(settings: Settings, consumer: str | None, startup_timeout_s: float,
                batch_size: int | None) -> int:
    from orchestrator.daemon import Daemon, DaemonOptions, serve  # noqa: PLC0415 - fast --help
    from orchestrator.store import JobStore, MemoryJobStore  # noqa: PLC0415

    log = get_logger("orchestrator.cli.daemon")
    redis = redis_for(settings)
    store: JobStore = (MemoryJobStore() if settings.mongo_url == MEMORY_STORE
                       else mongo_for(settings))
    options = DaemonOptions.from_settings(settings, consumer=consumer, batch_size=batch_size,
                                          startup_timeout_s=startup_timeout_s)
    objects = checkpoint_store(settings)
    daemon = Daemon(store, redis, options, objects=objects)
    try:
        async with anyio.create_task_group() as tg:
            try:
                with anyio.fail_after(startup_timeout_s if startup_timeout_s > 0 else None):
                    await tg.start(serving(daemon, settings.metrics_addr, serve))
            except TimeoutError:
                failure = (daemon.retry.last_failure
                           or f"{daemon.retry.last_attempt or 'startup'}: no answer yet")
                redis_url, mongo_url = redact(settings.redis_url), redact(settings.mongo_url)
                log.warning("startup timed out", waited_s=startup_timeout_s, last_error=failure,
                            redis=redis_url, mongo=mongo_url)
                click.echo(
                    f"orchestrator daemon: not ready after {startup_timeout_s:g}s "
                    f"(Redis {redis_url}, MongoDB {mongo_url}); last error: {failure[:300]}",
                    err=True)
                tg.cancel_scope.cancel()
                return EXIT_FAILURE
    finally:
        with anyio.CancelScope(shield=True):
            await redis.aclose()
            await store.close()
            if objects is not None:
                await objects.close()
    return EXIT_OK


def serving(daemon: Daemon, address: str | None,
            serve: Callable[..., Coroutine[Any, Any, None]]
            ) -> Callable[..., Coroutine[Any, Any, None]]:
    """``serve(daemon)``, or with an address the daemon beside its ``/metrics``, ``/healthz``
    and ``/readyz`` endpoint (``orchestrator.health.daemon``)."""
    if address is None:
        return partial(serve, daemon)
    from orchestrator.health.daemon import serve_observed  # noqa: PLC0415 - prometheus

    return partial(serve_observed, daemon, address)


def checkpoint_store(settings: Settings) -> ObjectStore | None:
    """The object store the daemon verifies announced checkpoints in: the workers' own
    (``ORCHESTRATOR_S3_URL``), or None for a ``memory://`` one, which lives in each worker's
    process and which the daemon cannot see (verification is then off, with a warning)."""
    if settings.s3_url.startswith("memory://"):
        return None
    try:
        return object_store_for(settings)  # with the workers' TLS files (ORCHESTRATOR_S3_CA_FILE)
    except StorageError as exc:
        raise BadInput(f"ORCHESTRATOR_S3_URL: {exc}") from exc


@click.command(name="daemon")
@click.option("--consumer", metavar="NAME", default=None,
              help="Stable consumer name of this replica (default: ORCHESTRATOR_CONSUMER_NAME, "
                   "else host-pid). Reuse it after a restart to drain what was in flight.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Log level (default: ORCHESTRATOR_LOG_LEVEL or info).")
@click.option("--startup-timeout", "startup_timeout_s", type=float, default=60.0,
              show_default=True,
              help="Seconds to keep retrying unreachable Redis/MongoDB at startup (0: forever).")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=None,
              help="Events per read (default: ORCHESTRATOR_BATCH_SIZE).")
@click.option("--metrics-addr", metavar="[HOST:]PORT", default=None,
              help="Serve /metrics, /healthz and /readyz there (default: "
                   "ORCHESTRATOR_METRICS_ADDR, else off; a bare port binds 127.0.0.1).")
def daemon(consumer: str | None, log_level: str | None, startup_timeout_s: float,
           batch_size: int | None, metrics_addr: str | None) -> None:
    """Run the orchestrator daemon (intake, dispatch, events, deadlines) until SIGTERM."""
    settings = with_metrics_addr(cli_settings(), metrics_addr)  # invalid: exit 2
    daemon_key(settings)  # none configured: one line on stderr, exit 2
    configure_logging(log_level or settings.log_level, settings.log_format)
    from orchestrator.daemon.tuning import tune_gc  # noqa: PLC0415

    tune_gc()
    try:
        code = anyio.run(_main, settings, consumer, startup_timeout_s, batch_size)
    except BaseExceptionGroup as group:  # the metrics address is taken: one line, exit 1
        from orchestrator.health.address import endpoint_error  # noqa: PLC0415

        failure = endpoint_error(group)
        if failure is None:
            raise
        raise Failure(str(failure)) from None
    sys.exit(code)
